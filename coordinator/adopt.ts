/**
 * Taking over a database the original scripts wrote (`mesh adopt`), without rewriting its
 * history. Most of their documents are already what CouchMesh reads: a step record present
 * (no `ok` flag) means done, `closed` / `good` / `bad` mean what they meant. What CouchMesh
 * cannot continue as it is gets the fewest changes that let it:
 * - `<step> failed` without a record of the failure: the failure is recorded under `pending`
 *   (attempt 0, so the limit counts from CouchMesh's first attempt); with `retryFailed` the step
 *   is made ready again, as `mesh retry` would;
 * - `<step> in progress` / `<step> queued` without a claim (the original scripts kept none):
 *   nobody holds the step, so it goes back to waiting (`closed` / `good`) with one history
 *   entry, and runs again; the original scripts' batch job number, when their `batchJob` list
 *   names one, is kept in the pending record;
 * - anything the write rules would refuse (a `good` document with a gap in its records, a
 *   malformed one) is left alone and reported: a person decides.
 * Nothing else is touched: no record, no date, no field changes.
 */
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import {
  type BatchJobEntry,
  type DaqDocument,
  type StepRecord,
  documentProblems,
  isDone,
  parseStatus,
  pendingRecord,
  withStepRecord,
} from '../core/document.js';
import { statusProblems } from '../core/invariants.js';
import { type PipelineSteps, transition } from '../core/state.js';

export type Adoption =
  /** Nothing to change: CouchMesh continues it as it is. */
  | { kind: 'keep' }
  | { kind: 'write'; doc: DaqDocument; change: string }
  /** Left alone: the write rules would refuse it, or it is malformed. */
  | { kind: 'stuck'; reason: string };

export interface AdoptOptions {
  now: Date;
  /** The history entries' `by`. */
  by: string;
  /** The account that writes (null without accounts). */
  user: string | null;
  /** Make the steps that failed under the original scripts ready again. */
  retryFailed: boolean;
}

/** The original scripts' last submission in `batchJob`, if any. */
function lastBatchJob(doc: DaqDocument): BatchJobEntry | undefined {
  const jobs = Array.isArray(doc.batchJob) ? doc.batchJob : [];
  const last = jobs[jobs.length - 1] as Partial<BatchJobEntry> | undefined;
  return last && (typeof last.number === 'number' || typeof last.number === 'string') ? (last as BatchJobEntry) : undefined;
}

/** What adoption does to one document of the pipeline's type. Pure. */
export function adoptionOf(doc: DaqDocument, config: PipelineSteps, options: AdoptOptions): Adoption {
  const stepNames = config.steps.map((s) => s.name);
  const malformed = documentProblems(doc, stepNames);
  if (malformed.length > 0) return { kind: 'stuck', reason: malformed.join('; ') };
  const problems = statusProblems(doc, stepNames);
  if (problems.length === 0) return { kind: 'keep' };
  const status = parseStatus(doc.status, stepNames);
  const step = status?.step;
  if (status === undefined || step === undefined || status.kind === 'good' || pendingRecord(doc, step) !== undefined || doc[step] !== undefined) {
    return { kind: 'stuck', reason: problems.join('; ') };
  }
  const undone = stepNames.slice(0, stepNames.indexOf(step)).filter((s) => !isDone(doc, s));
  if (undone.length > 0) return { kind: 'stuck', reason: problems.join('; ') };

  const at = options.now.toISOString();
  if (status.kind === 'failed') {
    const failure: StepRecord = { attempts: 0, ok: false, reason: 'failed under the original scripts', adopted: at };
    const recorded = withStepRecord(doc, step, failure);
    if (!options.retryFailed) return checked(recorded, stepNames, `${step}'s failure recorded in pending.${step}; mesh retry makes it ready`);
    const retried = transition(recorded, { type: 'retry', step, by: options.by, user: options.user }, options.now, config);
    if (!retried.ok) return { kind: 'stuck', reason: retried.error.message };
    return checked(retried.doc, stepNames, `${step} ready again (--retry-failed)`);
  }
  // In progress or queued with no claim: nobody holds the step; it waits again and runs once more.
  const job = status.kind === 'queued' ? lastBatchJob(doc) : undefined;
  const reason = job
    ? `queued as batch job ${job.number} under the original scripts when adopted`
    : `${status.kind === 'queued' ? 'queued' : 'in progress'} under the original scripts when adopted`;
  const waiting: StepRecord = {
    attempts: 0,
    ok: false,
    reason,
    adopted: at,
    ...(job ? { batch: { system: String(job.type ?? 'unknown'), id: String(job.number) } } : {}),
  };
  const ready = stepNames.indexOf(step) === 0 ? 'closed' : 'good';
  const history = [...(Array.isArray(doc.history) ? doc.history : []), { at, from: doc.status, to: ready, by: options.by, user: options.user, note: reason }];
  return checked(
    { ...withStepRecord(doc, step, waiting), status: ready, history },
    stepNames,
    `back to ${ready}: ${step} runs again${job ? ` (batch job ${job.number} forgotten)` : ''}`,
  );
}

/** The change, or why it would still be refused (a document adoption cannot make consistent). */
function checked(doc: DaqDocument, stepNames: readonly string[], change: string): Adoption {
  const problems = statusProblems(doc, stepNames);
  return problems.length === 0 ? { kind: 'write', doc, change } : { kind: 'stuck', reason: problems.join('; ') };
}

/** Per status of the documents found: how many were kept, changed (and how), left alone (and why). */
export interface AdoptReport {
  documents: number;
  /** Documents of other types (control documents, anything else): not touched. */
  other: number;
  byStatus: Record<string, { keep: number; write: number; stuck: number; changes: Record<string, number>; reasons: Record<string, number> }>;
  written: number;
  /** Writes the server refused or that met a newer revision (run adopt again for the latter). */
  failed: Array<{ id: string; error: string }>;
}

const PAGE = 500;

/**
 * Adopts every document of `db` (pages of 500, `_all_docs` order). With `dryRun` nothing is
 * written. A document that changed since it was read is reported, not overwritten.
 */
export async function adoptDatabase(
  db: Database,
  config: PipelineSteps & Pick<MeshConfig, 'doc_type'>,
  options: AdoptOptions & { dryRun: boolean; progress?: (report: AdoptReport) => void },
): Promise<AdoptReport> {
  const report: AdoptReport = { documents: 0, other: 0, byStatus: {}, written: 0, failed: [] };
  let startkey: string | undefined;
  for (;;) {
    const page = await db.allDocs<DaqDocument>({ include_docs: true, limit: PAGE + 1, ...(startkey === undefined ? {} : { startkey }) });
    const rows = page.rows.slice(0, PAGE);
    const writes: DaqDocument[] = [];
    for (const row of rows) {
      const doc = row.doc;
      if (!doc || doc._id.startsWith('_design/')) continue;
      if (doc.type !== config.doc_type) {
        report.other++;
        continue;
      }
      report.documents++;
      const adoption = adoptionOf(doc, config, options);
      const entry = (report.byStatus[String(doc.status)] ??= { keep: 0, write: 0, stuck: 0, changes: {}, reasons: {} });
      entry[adoption.kind]++;
      if (adoption.kind === 'write') {
        entry.changes[adoption.change] = (entry.changes[adoption.change] ?? 0) + 1;
        writes.push(adoption.doc);
      } else if (adoption.kind === 'stuck') {
        entry.reasons[adoption.reason] = (entry.reasons[adoption.reason] ?? 0) + 1;
      }
    }
    if (!options.dryRun && writes.length > 0) {
      for (const result of await db.bulk(writes)) {
        if (result.error) report.failed.push({ id: result.id, error: `${result.error}: ${result.reason ?? ''}`.trim() });
        else report.written++;
      }
    }
    options.progress?.(report);
    if (page.rows.length <= PAGE) return report;
    startkey = page.rows[PAGE].id as string;
  }
}
