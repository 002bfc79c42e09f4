/**
 * A real batch system for the tests, whichever it is: the suites that submit jobs are written
 * once against this and run on every system in BATCH_SYSTEMS.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startSge } from '../../cli/local/sge.js';
import { startSlurm } from './slurm.js';

const run = promisify(execFile);

export type { BatchSystemName } from '../../config/batch-walltime.js';
import type { BatchSystemName } from '../../config/batch-walltime.js';

export interface BatchCluster {
  readonly system: BatchSystemName;
  /** What the client commands (and so `mesh agent --once`) need in their environment. */
  readonly env: Record<string, string>;
  /** Submission options that hold a job in the queue until released. */
  readonly holdOptions: readonly string[];
  /** Submission options that give a job this walltime (Slurm rounds up to whole minutes). */
  walltimeOptions(seconds: number): string[];
  /** The ids of the jobs the scheduler still lists as queued or running. */
  activeJobs(): Promise<string[]>;
  /** The scheduler's own word for the job's state (`RUNNING`, `r`, `qw`, …), or 'gone' when it does not list it. */
  jobState(id: string): Promise<string>;
  /** What jobState says of a job submitted with holdOptions (`PENDING`, `hqw`). */
  readonly heldState: string;
  /** Whether jobState's word means the job ended (or the scheduler forgot it): it will run nothing more. */
  ended(state: string): boolean;
  /** Everything the scheduler shows any user about the job (`scontrol show job`, `qstat -j`): where a leaked password would appear. */
  shown(id: string): Promise<string>;
  /** Cancels the job with the system's own command (scancel, qdel), as an operator would. */
  cancel(id: string): Promise<void>;
  /** Releases a held job. */
  release(id: string): Promise<void>;
  /**
   * Lowers a queued job's walltime behind CouchMesh's back, as a partition default or an admin
   * would: the scheduler then kills it at that time (Slurm counts whole minutes and checks every 30 s).
   */
  limitWalltime(id: string, seconds: number): Promise<void>;
  stop(): Promise<void>;
}

async function startSlurmCluster(): Promise<BatchCluster> {
  const slurm = await startSlurm();
  const withEnv = { env: { ...process.env, ...slurm.env } };
  return {
    system: 'slurm',
    env: slurm.env,
    holdOptions: ['--hold'],
    walltimeOptions: (seconds) => [`--time=${Math.max(1, Math.ceil(seconds / 60))}`],
    activeJobs: async () =>
      (await run('squeue', ['-h', '-o', '%i'], withEnv)).stdout
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    jobState: async (id) => {
      const line = await slurm.scontrol(['show', 'job', '-o', id]).catch(() => '');
      return /JobState=(\S+)/.exec(line)?.[1] ?? 'gone';
    },
    heldState: 'PENDING',
    ended: (state) => ['gone', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE'].includes(state),
    shown: async (id) => (await slurm.scontrol(['show', 'job', '-o', id])) + (await slurm.scontrol(['show', 'job', '-dd', id])),
    cancel: async (id) => {
      await run('scancel', [id], withEnv);
    },
    release: async (id) => {
      await run('scontrol', ['release', id], withEnv);
    },
    limitWalltime: async (id, seconds) => {
      await run('scontrol', ['update', `JobId=${id}`, `TimeLimit=${Math.max(1, Math.ceil(seconds / 60))}`], withEnv);
    },
    stop: () => slurm.stop(),
  };
}

async function startSgeCluster(): Promise<BatchCluster> {
  const sge = await startSge();
  const must = async (command: 'qdel' | 'qrls' | 'qalter', args: string[]): Promise<void> => {
    const result = await sge.run(command, args);
    if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.code}: ${result.stderr || result.stdout}`);
  };
  const list = async () => {
    const result = await sge.run('qstat', ['-u', '*']);
    if (result.code !== 0) throw new Error(`qstat -u '*' exited with ${result.code}: ${result.stderr}`);
    // Two header lines, then `job-ID prior name user state …`; nothing at all when the queue is empty.
    return result.stdout
      .split('\n')
      .slice(2)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => /^\d+$/.test(f[0]));
  };
  return {
    system: 'sge',
    env: sge.env,
    holdOptions: ['-h'],
    walltimeOptions: (seconds) => ['-l', `h_rt=${seconds}`],
    activeJobs: async () => (await list()).map((f) => f[0]),
    jobState: async (id) => (await list()).find((f) => f[0] === id)?.[4] ?? 'gone',
    heldState: 'hqw',
    // Grid Engine lists a job until it ends, then forgets it (qacct has the rest).
    ended: (state) => state === 'gone',
    shown: async (id) => {
      const result = await sge.run('qstat', ['-j', id]);
      return result.stdout + result.stderr;
    },
    cancel: (id) => must('qdel', [id]),
    release: (id) => must('qrls', [id]),
    // qalter -l replaces the job's whole list of hard resources: the test jobs ask for nothing else.
    limitWalltime: (id, seconds) => must('qalter', ['-l', `h_rt=${Math.max(1, Math.round(seconds))}`, id]),
    stop: () => sge.stop(),
  };
}

export async function startBatchCluster(system: BatchSystemName): Promise<BatchCluster> {
  switch (system) {
    case 'slurm':
      return startSlurmCluster();
    case 'sge':
      return startSgeCluster();
  }
}
