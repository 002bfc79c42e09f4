/** The batch-system interface; implementations in slurm.ts and sge.ts, the factory in adapter.ts. */

/**
 * What the scheduler says of a job. `stuck`: it sits in the queue in an error state (Grid
 * Engine's `Eqw`) and will never start unless an operator clears the error.
 */
export type BatchState = 'pending' | 'running' | 'stuck' | 'completed' | 'failed' | 'cancelled' | 'unknown';

export interface BatchSubmission {
  /** Job name shown by the scheduler. */
  name: string;
  /** Path of an executable script. */
  script: string;
  stdout: string;
  stderr: string;
  /** Extra submission options from the site profile. */
  options: readonly string[];
}

/**
 * A batch system as the submitter sees it. Every command runs as an argument vector and
 * inherits the environment (which is how credentials reach the job: never on a command line).
 */
export interface BatchSystem {
  readonly name: 'slurm' | 'sge';
  /**
   * False when a job does not get the submitter's environment (Grid Engine without `-V`): then
   * credentials reach it only through a password file (`MESH_<SITE>_PASSWORD_FILE`). Default true.
   */
  readonly jobInheritsEnvironment?: boolean;
  /** Submits the script; resolves with the scheduler's job id. Throws BATCH_FAILED when refused. */
  submit(job: BatchSubmission): Promise<string>;
  /** The job's state; 'unknown' when the scheduler no longer knows the id (finished long ago, or never existed). */
  state(id: string): Promise<BatchState>;
  /** Removes the job from the queue, or ends it (scancel, qdel). */
  cancel(id: string): Promise<void>;
}
