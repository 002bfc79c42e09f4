/** An operator's retry of a failed step: the one transition behind `mesh retry` and the status page's button. */
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { type DaqDocument, parseStatus } from '../core/document.js';
import { MeshError, isMeshError } from '../core/errors.js';
import { transition } from '../core/state.js';

export interface RetryResult {
  doc: string;
  step: string;
  status: string;
  rev: string;
}

/** The step a retry of `docId` is about (checked against the pipeline), and the site whose server it is written to. */
export function retrySite(config: MeshConfig, step: string | undefined): string {
  const stepNames = config.steps.map((s) => s.name);
  if (step !== undefined && !stepNames.includes(step)) throw new MeshError('BAD_INPUT', `step ${step} is not in the pipeline (${stepNames.join(', ')})`);
  return config.steps.find((s) => s.name === step)?.site ?? config.ingest.site;
}

/**
 * Makes the failed step of `docId` ready again (its history and the failure are kept), as a
 * compare-and-set on the revision read; a document that changed meanwhile is read again.
 */
export async function retryFailedStep(config: MeshConfig, db: Database, docId: string, options: { step?: string; by: string; now?: () => Date }): Promise<RetryResult> {
  const stepNames = config.steps.map((s) => s.name);
  retrySite(config, options.step);
  for (let attempt = 0; attempt < 5; attempt++) {
    const doc = await db.get<DaqDocument>(docId);
    if (!doc) throw new MeshError('BAD_INPUT', `document ${docId} does not exist on ${db.url}`);
    const status = parseStatus(doc.status, stepNames);
    const step = options.step ?? status?.step;
    if (status?.kind !== 'failed' || !step) throw new MeshError('BAD_INPUT', `${docId} is "${doc.status}": nothing has failed there`);
    const next = transition(doc, { type: 'retry', step, by: options.by, user: db.user }, options.now?.() ?? new Date(), config);
    if (!next.ok) throw new MeshError('BAD_INPUT', next.error.message);
    try {
      const rev = await db.put(next.doc);
      return { doc: docId, step, status: next.doc.status, rev };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT')) throw error;
    }
  }
  throw new MeshError('CONFLICT', `${docId} kept changing while retrying; try again`);
}
