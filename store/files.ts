/**
 * The file documents' queries: each names what it answers (ready work, counts per status, the
 * flow of a step …), and builds its keys from the view contracts of couchapp/mesh-views.ts.
 * Callers never write a view name or a key array.
 */
import {
  BY_FILE_NAME,
  BY_HOST_RUN,
  BY_RUN,
  BY_STATUS,
  CONFLICTS,
  DONE,
  DUPLICATES,
  FAILED_STEPS,
  FLOW,
  type FailedValue,
  type FlowValue,
  IN_FLIGHT,
  type InFlightValue,
  LOST_JOBS,
  MESH_VIEW_CONTRACTS,
  type LostJobValue,
  PENDING,
  READY,
  stepRange,
} from '../couchapp/mesh-views.js';
import type { DaqDocument } from '../core/document.js';
import type { Database } from './database.js';

export interface PageOptions {
  /** The latest time a row's key may carry (ISO 8601): e.g. now, for work due now. */
  until: string;
  limit: number;
}

/** A row without a document object (a proxy's or another API's answer) is not work. */
function documentsOf(rows: Array<{ doc?: unknown }>): DaqDocument[] {
  return rows.flatMap((row) =>
    row.doc && typeof row.doc === 'object' && typeof (row.doc as { _id?: unknown })._id === 'string' ? [row.doc as DaqDocument] : [],
  );
}

/** A reduce value as a count; anything else (a foreign view, a proxy's answer) counts nothing. */
export function countOf(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

/** Documents whose `step` is ready by `until`, oldest retry time first (no full scan). */
export async function ready(db: Database, step: string, page: PageOptions): Promise<DaqDocument[]> {
  return documentsOf(await db.rows(READY, { ...stepRange(step, { from: '', until: page.until }), include_docs: true, limit: page.limit }));
}

/** Claimed documents of `step` whose lease ended by `until`. */
export async function expiredClaims(db: Database, step: string, page: PageOptions): Promise<DaqDocument[]> {
  return documentsOf(await db.rows(IN_FLIGHT, { ...stepRange(step, { from: '', until: page.until }), include_docs: true, limit: page.limit }));
}

/** Every claimed document of `step` (queued or in progress, whatever its lease). */
export async function claimed(db: Database, step: string, limit: number): Promise<DaqDocument[]> {
  return documentsOf(await db.rows(IN_FLIGHT, { ...stepRange(step), include_docs: true, limit }));
}

/** Whether anything of `step` is ready by `until`. */
export async function anyReady(db: Database, step: string, until: string): Promise<boolean> {
  return (await db.rows(READY, { ...stepRange(step, { until }), limit: 1 })).length > 0;
}

/** Whether `step` has a claim in flight. */
export async function anyClaimed(db: Database, step: string): Promise<boolean> {
  return (await db.rows(IN_FLIGHT, { ...stepRange(step), limit: 1 })).length > 0;
}

/** How many documents of `step` are ready by `until`. */
export async function readyCount(db: Database, step: string, until: string): Promise<number> {
  return countOf((await db.reduced(READY, stepRange(step, { from: '', until })))[0]?.value);
}

/** Documents per status. */
export async function countByStatus(db: Database): Promise<Map<string, number>> {
  return new Map((await db.reduced(BY_STATUS, { group: true })).map((r) => [String(r.key), countOf(r.value)]));
}

/** Documents done per step. */
export async function countDone(db: Database): Promise<Map<string, number>> {
  return new Map((await db.reduced(DONE, { group: true })).map((r) => [String(r.key), countOf(r.value)]));
}

/** Documents done for `step` (one step's count, as a wait condition reads it). */
export async function doneCount(db: Database, step: string): Promise<number> {
  return countOf((await db.reduced(DONE, { key: step }))[0]?.value);
}

export async function conflictCount(db: Database): Promise<number> {
  return countOf((await db.reduced(CONFLICTS))[0]?.value);
}

export interface ClaimRow extends InFlightValue {
  doc: string;
  step: string;
  lease_until: string | null;
}

/** The first `limit` claims in flight, by step and lease end. */
export async function claimsInFlight(db: Database, limit: number): Promise<ClaimRow[]> {
  return (await db.rows(IN_FLIGHT, { limit })).map((r) => ({ doc: r.id, step: r.key[0], lease_until: r.key[1], ...r.value }));
}

/** The first `limit` claims in flight of `step`, by lease end. */
export async function claimsOfStep(db: Database, step: string, limit: number): Promise<ClaimRow[]> {
  return (await db.rows(IN_FLIGHT, { ...stepRange(step), limit })).map((r) => ({ doc: r.id, step: r.key[0], lease_until: r.key[1], ...r.value }));
}

/** The first `limit` steps failed for good. */
export async function failedSteps(db: Database, limit: number): Promise<Array<FailedValue & { doc: string; step: string }>> {
  return (await db.rows(FAILED_STEPS, { limit })).map((r) => ({ ...r.value, doc: r.id, step: r.key }));
}

/**
 * A page of the documents whose `step` failed for good, after the first `skip` of them. By
 * offset, not by document id: the embedded server has no `startkey_docid`.
 */
export async function failedOfStep(db: Database, step: string, page: { limit: number; skip: number }): Promise<Array<FailedValue & { doc: string }>> {
  return (await db.rows(FAILED_STEPS, { key: step, skip: page.skip, limit: page.limit })).map((r) => ({ ...r.value, doc: r.id }));
}

/** The newest `limit` batch jobs found lost. */
export async function lostJobs(db: Database, limit: number): Promise<Array<LostJobValue & { doc: string; step: string }>> {
  return (await db.rows(LOST_JOBS, { descending: true, limit })).map((r) => ({ doc: r.id, step: r.key[0], ...r.value }));
}

/** The newest `limit` batch jobs of `step` found lost, with when their attempt started. */
export async function lostJobsOf(
  db: Database,
  step: string,
  limit: number,
): Promise<Array<LostJobValue & { doc: string; step: string; started: string | null }>> {
  return (await db.rows(LOST_JOBS, { descending: true, startkey: [step, {}], endkey: [step], limit })).map((r) => ({
    doc: r.id,
    step: r.key[0],
    started: r.key[1],
    ...r.value,
  }));
}

/** Ids of documents with conflicting revisions, `limit` at most, after `after` (paging by id). */
export async function conflicted(db: Database, limit: number, after?: string): Promise<string[]> {
  return (await db.rows(CONFLICTS, { limit, ...(after === undefined ? {} : { startkey: after, skip: 1 }) })).map((r) => r.id);
}

/** Ids of documents whose double claim the audit resolved. */
export async function duplicated(db: Database, limit: number): Promise<string[]> {
  return (await db.rows(DUPLICATES, { limit })).map((r) => r.id);
}

/** Files of `step` done per hour, for the hours `hours` (oldest first, `YYYY-MM-DDTHH`). */
export async function donePerHour(db: Database, step: string, hours: readonly string[]): Promise<Map<string, number>> {
  if (hours.length === 0) return new Map();
  const rows = await db.reduced(FLOW, { group_level: 2, startkey: [step, hours[0]], endkey: [step, hours[hours.length - 1], {}] });
  return new Map(rows.map((r) => [(r.key as [string, string])[1], countOf(r.value)]));
}

export interface FlowRow {
  doc: string;
  finished: string;
  value: FlowValue;
}

/** Time window of a flow query: from `start` to `end` (Date), with the hour of each. */
function flowKeys(step: string, start: Date, end: Date): { low: unknown[]; high: unknown[] } {
  const hour = (d: Date) => d.toISOString().slice(0, 13);
  return { low: [step, hour(start), start.toISOString()], high: [step, hour(end), end.toISOString()] };
}

/** The newest `limit` steps finished between `start` and `end`, newest first. */
export async function finishedBetween(db: Database, step: string, start: Date, end: Date, limit: number): Promise<FlowRow[]> {
  const { low, high } = flowKeys(step, start, end);
  return (await db.rows(FLOW, { descending: true, startkey: high, endkey: low, limit })).map((r) => ({ doc: r.id, finished: r.key[2], value: r.value }));
}

/** When `step` last finished for any file (the flow view's newest row), or undefined when it never did. */
export async function lastFinished(db: Database, step: string): Promise<string | undefined> {
  const [row] = await db.rows(FLOW, { descending: true, startkey: [step, {}], endkey: [step], limit: 1 });
  return row?.key[2];
}

/** How many steps finished between `start` and `end` (a reduce over the range: ask it only when a page was full). */
export async function finishedCount(db: Database, step: string, start: Date, end: Date): Promise<number> {
  const { low, high } = flowKeys(step, start, end);
  return countOf((await db.reduced(FLOW, { startkey: low, endkey: high }))[0]?.value);
}

export interface PendingRow {
  doc: string;
  closed: string;
  run: string | null;
  file: number | null;
}

/** Files not done for `step` whose DAQ close is at most `closedBy`, the oldest first. */
export async function pendingClosedBy(db: Database, step: string, closedBy: string, limit: number): Promise<PendingRow[]> {
  return (await db.rows(PENDING, { ...stepRange(step, { from: '', until: closedBy }), limit })).map((r) => ({
    doc: r.id,
    closed: r.key[1],
    run: r.value?.[0] ?? null,
    file: r.value?.[1] ?? null,
  }));
}

export async function pendingClosedByCount(db: Database, step: string, closedBy: string): Promise<number> {
  return countOf((await db.reduced(PENDING, stepRange(step, { from: '', until: closedBy })))[0]?.value);
}

export interface RunFile {
  doc: string;
  run: string | null;
  file: number | null;
  status: string;
}

function runFile(row: { id: string; key: [string | null, number | null]; value: string }): RunFile {
  return { doc: row.id, run: row.key[0], file: row.key[1], status: row.value };
}

/** In (run, file number) order: the file after or before (`direction`) the position given, not included. */
export async function adjacentFile(db: Database, run: string, file: number, direction: 'next' | 'previous'): Promise<RunFile | undefined> {
  const [row] = await db.rows(BY_RUN, { startkey: [run, file], skip: 1, limit: 1, ...(direction === 'previous' ? { descending: true } : {}) });
  return row && runFile(row);
}

/** The first file of the first run at or after `run` (`from: 'start'`), the last file before it (`'before'`), or the first after all of it (`'after'`). */
export async function fileAtRun(db: Database, run: string, where: 'start' | 'before' | 'after'): Promise<RunFile | undefined> {
  const qs = where === 'start' ? { startkey: [run] } : where === 'before' ? { startkey: [run], descending: true } : { startkey: [run, {}] };
  const [row] = await db.rows(BY_RUN, { ...qs, limit: 1 });
  return row && runFile(row);
}

/** The first file of exactly `run`. */
export async function firstFileOf(db: Database, run: string): Promise<RunFile | undefined> {
  const [row] = await db.rows(BY_RUN, { startkey: [run], endkey: [run, {}], limit: 1 });
  return row && runFile(row);
}

/** The documents at the given (run, file number) positions (a bounded list: the status page's latest file of each run). */
export async function documentsAt(db: Database, positions: ReadonlyArray<[run: string, file: number]>): Promise<DaqDocument[]> {
  return documentsOf(await db.rows(BY_RUN, { keys: positions, include_docs: true }));
}

export interface HostRun {
  host: string;
  run: string | null;
  files: number;
  latest_file: number;
}

/** The last `limit` (DAQ host, run) pairs, descending, with their file count and highest file number. */
export async function hostRuns(db: Database, limit: number): Promise<HostRun[]> {
  const rows = await db.reduced<{ max: number; count: number }>(BY_HOST_RUN, { group_level: 2, descending: true, limit });
  return rows.map((row) => {
    const [host, run] = row.key as [string, string | null];
    return { host, run, files: row.value.count, latest_file: row.value.max };
  });
}

/** Documents whose file's base name starts with `prefix`. */
export async function filesNamed(db: Database, prefix: string, limit: number): Promise<Array<{ doc: string; name: string }>> {
  return (await db.rows(BY_FILE_NAME, { startkey: prefix, endkey: `${prefix}\ufff0`, limit })).map((r) => ({ doc: r.id, name: r.key }));
}

/** Builds every view's index (one query each), e.g. before a clock starts. */
export async function buildIndexes(db: Database): Promise<void> {
  for (const view of MESH_VIEW_CONTRACTS) await db.rows(view, { limit: 1 });
}
