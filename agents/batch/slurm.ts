import { MeshError } from '../../core/errors.js';
import type { BatchState, BatchSubmission, BatchSystem } from './types.js';
import { type Exec, commandFailed } from './exec.js';

/** `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`. */
export function parseSbatch(stdout: string): string {
  const line = stdout.trim().split('\n').pop() ?? '';
  const id = line.split(';')[0].trim();
  if (!/^\d+$/.test(id)) throw new MeshError('BATCH_FAILED', `sbatch --parsable printed ${JSON.stringify(stdout.slice(0, 200))}, expected a job id`);
  return id;
}

/** The JobState field of `scontrol show job -o ID` (one line per job), for the job `id`. */
export function parseScontrolJobState(stdout: string, id: string): string | undefined {
  for (const line of stdout.split('\n')) {
    if (!new RegExp(`(^|\\s)JobId=${id}(\\s|$)`).test(line)) continue;
    return /(?:^|\s)JobState=(\S+)/.exec(line)?.[1];
  }
  return undefined;
}

/** Slurm's job states (squeue(1), "JOB STATE CODES") in the adapter's vocabulary. */
export function slurmState(jobState: string): BatchState {
  switch (jobState.toUpperCase()) {
    case 'PENDING':
    case 'CONFIGURING':
    case 'REQUEUED':
    case 'REQUEUE_HOLD':
    case 'REQUEUE_FED':
    case 'RESV_DEL_HOLD':
      return 'pending';
    case 'RUNNING':
    case 'COMPLETING':
    case 'SUSPENDED':
    case 'STOPPED':
    case 'SIGNALING':
    case 'STAGE_OUT':
    case 'RESIZING':
      return 'running';
    case 'COMPLETED':
      return 'completed';
    case 'CANCELLED':
    case 'REVOKED':
      return 'cancelled';
    case 'FAILED':
    case 'TIMEOUT':
    case 'NODE_FAIL':
    case 'OUT_OF_MEMORY':
    case 'BOOT_FAIL':
    case 'DEADLINE':
    case 'PREEMPTED':
    case 'SPECIAL_EXIT':
      return 'failed';
    default:
      return 'unknown';
  }
}

/** Slurm: `sbatch`, `scontrol show job`, `scancel` (no slurmdbd needed). */
export class SlurmBatch implements BatchSystem {
  readonly name = 'slurm' as const;

  constructor(private readonly exec: Exec) {}

  async submit(job: BatchSubmission): Promise<string> {
    const args = ['--parsable', '--job-name', job.name, '--output', job.stdout, '--error', job.stderr, ...job.options, job.script];
    const result = await this.exec('sbatch', args);
    if (result.code !== 0) throw commandFailed('sbatch', args, result);
    return parseSbatch(result.stdout);
  }

  async state(id: string): Promise<BatchState> {
    checkId(id);
    const args = ['show', 'job', '-o', id];
    const result = await this.exec('scontrol', args);
    // A job purged after MinJobAge, or an id that never existed.
    if (result.code !== 0 && /invalid job id/i.test(result.stderr)) return 'unknown';
    if (result.code !== 0) throw commandFailed('scontrol', args, result);
    const state = parseScontrolJobState(result.stdout, id);
    return state === undefined ? 'unknown' : slurmState(state);
  }

  async cancel(id: string): Promise<void> {
    checkId(id);
    const result = await this.exec('scancel', [id]);
    if (result.code !== 0) throw commandFailed('scancel', [id], result);
  }
}

function checkId(id: string): void {
  if (!/^\d+$/.test(id)) throw new MeshError('BAD_INPUT', `${JSON.stringify(id)} is not a Slurm job id`);
}
