import type { BatchConfig } from '../../config/types.js';
import { type Exec, execCommand } from './exec.js';
import { SgeBatch } from './sge.js';
import { SlurmBatch } from './slurm.js';
import type { BatchSystem } from './types.js';

export type { BatchState, BatchSubmission, BatchSystem } from './types.js';

/** The adapter for a site's batch system. */
export function batchSystem(config: BatchConfig, exec: Exec = execCommand): BatchSystem {
  return config.system === 'sge' ? new SgeBatch(exec) : new SlurmBatch(exec);
}
