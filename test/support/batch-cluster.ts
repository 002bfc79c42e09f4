/**
 * A real batch system for the tests, whichever it is: the suites that submit jobs are written
 * once against this and run on every system in BATCH_SYSTEMS.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startSlurm } from './slurm.js';

const run = promisify(execFile);

export type BatchSystemName = 'slurm' | 'sge';

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

export async function startBatchCluster(system: BatchSystemName): Promise<BatchCluster> {
  switch (system) {
    case 'slurm':
      return startSlurmCluster();
    case 'sge':
      throw new Error('the Grid Engine test cluster is not written yet');
  }
}
