/** An operator's retry of a failed step: the one transition behind `mesh retry` and the status page's button. */
import { update } from '../store/update.js';
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { type DaqDocument, parseStatus } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import { RUN_ID_PREFIX } from '../core/run-document.js';
import { transition } from '../core/state.js';

export interface RetryResult {
  doc: string;
  step: string;
  status: string;
  rev: string;
}

/** The step a retry of `docId` is about (checked against the pipeline), and the site whose server it is written to. */
export function retrySite(config: MeshConfig, step: string | undefined): string {
  // A run step is retried on its run document (core/run-document.ts), on its own site's server.
  const runStep = config.run_steps?.find((s) => s.name === step);
  if (runStep) return runStep.site;
  const stepNames = config.steps.map((s) => s.name);
  if (step !== undefined && !stepNames.includes(step)) throw new MeshError('BAD_INPUT', `step ${step} is not in the pipeline (${stepNames.join(', ')})`);
  return config.steps.find((s) => s.name === step)?.site ?? config.ingest.site;
}

/**
 * Makes the failed step of `docId` ready again (its history and the failure are kept), as a
 * compare-and-set on the revision read; a document that changed meanwhile is read again.
 */
export async function retryFailedStep(
  config: MeshConfig,
  db: Database,
  docId: string,
  options: {
    step?: string;
    by: string;
    /** Why the operator retries: kept in the history entry's note. */
    why?: string;
    /** A bulk retry's filter, checked again on the revision written (the document may have changed since it was listed). */
    matches?: (doc: DaqDocument) => boolean;
    now?: () => Date;
  },
): Promise<RetryResult> {
  // A run document's pipeline is the run steps.
  if (docId.startsWith(RUN_ID_PREFIX)) config = { ...config, steps: config.run_steps ?? [] };
  const stepNames = config.steps.map((s) => s.name);
  retrySite(config, options.step);
  let step = '';
  const result = await update<DaqDocument>(db, docId, (doc) => {
    const current = doc as DaqDocument;
    const status = parseStatus(current.status, stepNames);
    step = options.step ?? status?.step ?? '';
    if (status?.kind !== 'failed' || !step) return { illegal: new MeshError('BAD_INPUT', `${docId} is "${current.status}": nothing has failed there`) };
    if (options.matches && !options.matches(current)) return { illegal: new MeshError('BAD_INPUT', `${docId} no longer matches the retry's filter`) };
    const event = { type: 'retry' as const, step, by: options.by, user: db.user, ...(options.why ? { why: options.why } : {}) };
    const next = transition(current, event, options.now?.() ?? new Date(), config);
    return next.ok ? { write: next.doc } : { illegal: new MeshError('BAD_INPUT', next.error.message) };
  });
  if (result.kind === 'gone') throw new MeshError('BAD_INPUT', `document ${docId} does not exist on ${db.url}`);
  if (result.kind === 'conflict') throw new MeshError('CONFLICT', `${docId} kept changing while retrying; try again`);
  if (result.kind === 'illegal') throw result.error;
  return { doc: docId, step, status: result.doc.status, rev: result.doc._rev as string };
}
