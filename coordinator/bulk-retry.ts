/**
 * `mesh retry --step S --failed`: every document whose S failed for good, optionally only those
 * whose failure reason matches a regular expression or of one run, made ready again. The list
 * is made first (the view changes as documents are retried), then each document is retried with
 * its own compare-and-set that checks the filter again on the revision it writes. A dry run
 * lists and counts, and writes nothing.
 */
import type { MeshConfig } from '../config/types.js';
import { type DaqDocument, pendingRecord } from '../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import type { Database } from '../store/database.js';
import { failedOfStep } from '../store/files.js';
import { retryFailedStep } from './retry.js';

export interface BulkRetryFilter {
  step: string;
  /** Matched against the failure's reason (`pending.<step>.reason`). */
  reason?: RegExp;
  run?: string;
}

export interface FailedMatch {
  doc: string;
  run_name: string | null;
  reason: string | null;
}

export interface BulkRetryResult {
  /** Documents matching the filter when listed. */
  matched: number;
  retried: number;
  /** Listed, but no longer failed or no longer matching when written (an agent or another operator got there first). */
  moved_on: number;
  /** Errors, by document (transport failures, refusals). */
  errors: Array<{ doc: string; error: string }>;
  sample: FailedMatch[];
}

/** A `--reason` text as a regular expression; a clear error when it is not one. */
export function reasonPattern(text: string): RegExp {
  try {
    return new RegExp(text);
  } catch (error) {
    throw new MeshError('BAD_INPUT', `--reason ${JSON.stringify(text)} is not a regular expression: ${errorMessage(error)}`);
  }
}

function matchesRow(row: { reason: string | null; run_name: string | null }, filter: BulkRetryFilter): boolean {
  if (filter.run !== undefined && row.run_name !== filter.run) return false;
  return filter.reason === undefined || filter.reason.test(row.reason ?? '');
}

function matchesDoc(doc: DaqDocument, filter: BulkRetryFilter): boolean {
  const reason = pendingRecord(doc, filter.step)?.reason;
  return matchesRow({ reason: typeof reason === 'string' ? reason : null, run_name: typeof doc.run_name === 'string' ? doc.run_name : null }, filter);
}

/** The most failed documents one bulk retry lists: a bound on the loop, far above a shift's worth. */
export const LIST_LIMIT = 1_000_000;

/**
 * Every failed document of the step matching the filter (paged through the `failed_steps`
 * view). Listed before anything is written, so that the pages do not move under the offsets.
 */
export async function listFailed(db: Database, filter: BulkRetryFilter, pageSize = 1000): Promise<FailedMatch[]> {
  const found: FailedMatch[] = [];
  for (let skip = 0; skip < LIST_LIMIT; skip += pageSize) {
    const page = await failedOfStep(db, filter.step, { limit: pageSize, skip });
    for (const row of page) {
      const match = { doc: row.doc, run_name: row.run_name, reason: row.reason };
      if (matchesRow(match, filter)) found.push(match);
    }
    if (page.length < pageSize) return found;
  }
  throw new MeshError('BAD_INPUT', `more than ${LIST_LIMIT} failed ${filter.step} documents: narrow the retry with --run or --reason`);
}

export interface BulkRetryOptions {
  dryRun: boolean;
  by: string;
  why: string;
  /** How many documents are retried at once. */
  parallel?: number;
  sampleSize?: number;
  pageSize?: number;
  /** Called after each document (done of total), for a progress line. */
  onProgress?: (done: number, total: number) => void;
  now?: () => Date;
}

export async function bulkRetry(config: MeshConfig, db: Database, filter: BulkRetryFilter, options: BulkRetryOptions): Promise<BulkRetryResult> {
  if (!config.steps.some((s) => s.name === filter.step))
    throw new MeshError('BAD_INPUT', `step ${filter.step} is not in the pipeline (${config.steps.map((s) => s.name).join(', ')})`);
  const listed = await listFailed(db, filter, options.pageSize);
  const result: BulkRetryResult = { matched: listed.length, retried: 0, moved_on: 0, errors: [], sample: listed.slice(0, options.sampleSize ?? 10) };
  if (options.dryRun) return result;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < listed.length) {
      const { doc } = listed[next++];
      try {
        await retryFailedStep(config, db, doc, {
          step: filter.step,
          by: options.by,
          why: options.why,
          matches: (d) => matchesDoc(d, filter),
          now: options.now,
        });
        result.retried++;
      } catch (error) {
        // Not failed any more, or no longer the failure the operator chose: someone else acted.
        if (isMeshError(error, 'BAD_INPUT')) result.moved_on++;
        else result.errors.push({ doc, error: errorMessage(error) });
      }
      options.onProgress?.(++done, listed.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 8) }, worker));
  return result;
}
