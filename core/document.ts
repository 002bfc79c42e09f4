/**
 * The metadata document of one DAQ file, compatible with the original scripts' documents.
 * Status strings keep their vocabulary: `closed`, `good`, `bad`, `<step> queued`,
 * `<step> in progress`, `<step> failed`.
 *
 * A step's record lives in one of two places. `procN` at the top level is its result, present
 * only once the step succeeded (the original scripts' readers take "`procN` present" to mean
 * "step N done", and their records have no `ok` flag). `pending.procN` holds the step while it
 * is not done: the claim, a failed attempt waiting for its retry, a final failure. The write
 * that records the success moves the record from `pending` to the top level.
 */

export interface Checksum {
  sha256: string;
}

/** CouchMesh's view of the batch job that runs a claim (`batch` in a record). */
export interface BatchJob {
  system: string;
  /** Known once the batch system accepted the job; absent between the claim and the submission. */
  id?: string;
  stdout?: string;
  stderr?: string;
  submitted?: string;
}

/**
 * What identifies one run of a step on its host: written with the first renewal after the
 * process started, so an agent taking over the claim on that host can prove the run is gone.
 */
export interface RunIdentity {
  host: string;
  pid: number;
  /** The run's process group: the step and its descendants. */
  pgid: number;
  /** Field 22 of /proc/<pid>/stat: the process start time in clock ticks since boot. */
  start_time: number;
  /** /proc/sys/kernel/random/boot_id: start times of two boots cannot be compared. */
  boot_id: string;
}

/** One `procN` record: the claim while a step runs, its result once it ran. */
export interface StepRecord {
  /** The number of the latest attempt: it only grows, and names the attempt's log files. */
  attempts: number;
  /** Attempts that do not count against `max_attempts`: released ones, and those before an operator's retry. */
  uncounted?: number;
  /** Of the uncounted: attempts lost with a batch job that never started them (UNSTARTED_LIMIT). */
  unstarted?: number;
  /** The account (CouchDB user name) that made the claim; null on a server without accounts. */
  account?: string | null;
  ok?: boolean;
  site?: string;
  agent?: string;
  host?: string;
  started?: string;
  finished?: string;
  lease_until?: string;
  /** A failed attempt may be retried from this time on. */
  retry_after?: string;
  exit_code?: number | null;
  signal?: string | null;
  duration_s?: number;
  file?: string;
  checksum?: Checksum;
  stdout?: string;
  stderr?: string;
  /** Why the last attempt failed, in words. */
  reason?: string;
  stderr_tail?: string;
  /** The batch job that runs (or ran) the attempt. */
  batch?: BatchJob;
  /** Success records, for the original scripts: the batch job's number as they wrote it. */
  batchjob?: number | string;
  /** Success records, for the original scripts: bytes of the output `file`. */
  file_size?: number;
  /** Success records, for the original scripts: when the step finished. */
  date?: string;
  /** Success records, for the original scripts: the program that ran the step. */
  processname?: string;
  /** Success records, for the original scripts: the host that ran the step. */
  hostname?: string;
  /** The latest earlier attempts of this step (at most 10), each with how it ended. */
  past_attempts?: unknown[];
  run?: RunIdentity;
  /** The step's `version` in the config of the agent that claimed (or, for a batch job, started) it; absent without one. */
  version?: string;
  [extra: string]: unknown;
}

export interface HistoryEntry {
  at: string;
  from: string | null;
  to: string;
  by: string;
  /** The account that wrote the entry (null without accounts); the server checks it against the writer. */
  user?: string | null;
  rev?: string;
  note?: string;
  /** Set by an operator's `mesh reprocess`: the step made ready again (its done record and the later ones moved to `superseded`). */
  reprocess?: string;
}

/**
 * A done record replaced by `mesh reprocess`, kept whole (its output's path and checksum with
 * it). `superseded` is append-only: the server lets a done record leave the top level only into it.
 */
export interface SupersededEntry {
  step: string;
  record: StepRecord;
  at: string;
  /** `operator/<login>`, as the history entry's `by`. */
  by: string;
  user: string | null;
  why: string;
  /** The step's version in the config of the reprocess (what re-makes the record), null without one. */
  version: string | null;
}

/** One submission, in the original scripts' top-level `batchJob` list (appended per submission). */
export interface BatchJobEntry {
  number: number | string;
  script: string;
  stdout: string;
  stderr: string;
  command: string;
  /** The batch system (`slurm`, `sge`). */
  type: string;
  date: string;
}

export interface DaqDocument {
  _id: string;
  _rev?: string;
  _conflicts?: string[];
  type: string;
  run_name: string;
  file_number: number;
  file: string;
  size_in_bytes: number;
  checksum?: Checksum;
  date_closed: string;
  status: string;
  history: HistoryEntry[];
  /** Records of the steps not done yet, by step name. */
  pending?: Record<string, StepRecord>;
  batchJob?: BatchJobEntry[];
  superseded?: SupersededEntry[];
  [field: string]: unknown;
}

/** Top-level fields the mesh owns (besides the step records and CouchDB's `_` fields): no header field of ingest may set them (custody.ts). */
export const MESH_FIELDS: readonly string[] = Object.freeze([
  'type',
  'status',
  'history',
  'pending',
  'duplicates',
  'batchJob',
  'superseded',
  'custody',
  'purged',
]);

export type StatusKind = 'closed' | 'good' | 'bad' | 'queued' | 'in_progress' | 'failed';

export interface ParsedStatus {
  kind: StatusKind;
  /** The step the status names (`proc1` in `proc1 failed`), absent for closed/good/bad. */
  step?: string;
}

const STEP_SUFFIX: ReadonlyArray<[string, StatusKind]> = [
  [' queued', 'queued'],
  [' in progress', 'in_progress'],
  [' failed', 'failed'],
];

/** Parses a status against the pipeline's step names; undefined for anything unknown. */
export function parseStatus(status: unknown, stepNames: readonly string[]): ParsedStatus | undefined {
  if (typeof status !== 'string') return undefined;
  if (status === 'closed' || status === 'good' || status === 'bad') return { kind: status };
  for (const [suffix, kind] of STEP_SUFFIX) {
    if (status.endsWith(suffix)) {
      const step = status.slice(0, -suffix.length);
      return stepNames.includes(step) ? { kind, step } : undefined;
    }
  }
  return undefined;
}

export function formatStatus(parsed: ParsedStatus): string {
  switch (parsed.kind) {
    case 'queued':
      return `${parsed.step} queued`;
    case 'in_progress':
      return `${parsed.step} in progress`;
    case 'failed':
      return `${parsed.step} failed`;
    default:
      return parsed.kind;
  }
}

/** Reasons a document cannot be handled, one per problem; empty when it is well-formed. */
export function documentProblems(doc: unknown, stepNames: readonly string[]): string[] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return ['not a JSON object'];
  const d = doc as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof d._id !== 'string') problems.push('_id is not a string');
  if (typeof d.status !== 'string') problems.push(`status is ${describe(d.status)}, expected a string`);
  else if (!parseStatus(d.status, stepNames)) problems.push(`status ${JSON.stringify(d.status).slice(0, 80)} is unknown`);
  if (typeof d.file !== 'string' || d.file.length === 0) problems.push(`file is ${describe(d.file)}, expected a path`);
  if (typeof d.run_name !== 'string') problems.push(`run_name is ${describe(d.run_name)}, expected a string`);
  if (typeof d.file_number !== 'number' || !Number.isSafeInteger(d.file_number))
    problems.push(`file_number is ${describe(d.file_number)}, expected an integer`);
  if (d.size_in_bytes !== undefined && (typeof d.size_in_bytes !== 'number' || !Number.isSafeInteger(d.size_in_bytes) || d.size_in_bytes < 0))
    problems.push(`size_in_bytes is ${describe(d.size_in_bytes)}, expected a non-negative integer`);
  // The transfer compares the copy against this checksum: it must be one, or absent.
  if (d.checksum !== undefined) {
    const sha256 = (d.checksum as { sha256?: unknown } | null)?.sha256;
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256))
      problems.push(`checksum is ${describe(d.checksum)}, expected { "sha256": 64 hex digits }`);
  }
  if (d.history !== undefined && !Array.isArray(d.history)) problems.push('history is not an array');
  // A mesh document is a few levels deep; thousands of levels make JSON.stringify overflow the stack.
  if (nestedDeeperThan(d, MAX_DEPTH)) problems.push(`nested deeper than ${MAX_DEPTH} levels`);
  const pending = d.pending;
  if (pending !== undefined && (pending === null || typeof pending !== 'object' || Array.isArray(pending)))
    problems.push(`pending is ${describe(pending)}, expected an object`);
  for (const step of stepNames) {
    const done = d[step];
    if (done !== undefined && (done === null || typeof done !== 'object' || Array.isArray(done)))
      problems.push(`${step} is ${describe(done)}, expected a record object`);
    const record = (pending as Record<string, unknown> | undefined)?.[step];
    if (record === undefined) continue;
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      problems.push(`pending.${step} is ${describe(record)}, expected a record object`);
      continue;
    }
    const r = record as Record<string, unknown>;
    if (typeof r.attempts !== 'number' || !Number.isInteger(r.attempts) || r.attempts < 0)
      problems.push(`pending.${step}.attempts is ${describe(r.attempts)}, expected a non-negative integer`);
    if (r.ok !== undefined && typeof r.ok !== 'boolean') problems.push(`pending.${step}.ok is ${describe(r.ok)}, expected a boolean`);
    for (const field of ['lease_until', 'retry_after'] as const) {
      if (r[field] !== undefined && (typeof r[field] !== 'string' || Number.isNaN(Date.parse(r[field] as string))))
        problems.push(`pending.${step}.${field} is not an ISO date`);
    }
  }
  return problems;
}

const MAX_DEPTH = 64;

/** Whether `value` holds objects or arrays more than `limit` levels deep (iterative: no stack to overflow). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  while (pending.length > 0) {
    const [current, depth] = pending.pop() as [unknown, number];
    if (current === null || typeof current !== 'object') continue;
    if (depth > limit) return true;
    for (const inner of Object.values(current)) if (inner !== null && typeof inner === 'object') pending.push([inner, depth + 1]);
  }
  return false;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Whether the step succeeded: its record is at the top level (the original scripts' records have no `ok`). */
export function isDone(doc: Record<string, unknown>, step: string): boolean {
  const record = objectOrUndefined(doc[step]);
  return record !== undefined && record.ok !== false;
}

/** The step's pending record (not done yet), or undefined. */
export function pendingRecord(doc: Record<string, unknown>, step: string): Record<string, unknown> | undefined {
  return objectOrUndefined(objectOrUndefined(doc.pending)?.[step]);
}

/** The step's record wherever it is: its result once done, else its pending record. */
export function stepRecord(doc: DaqDocument, step: string): StepRecord | undefined {
  if (isDone(doc, step)) return doc[step] as StepRecord;
  return pendingRecord(doc, step) as StepRecord | undefined;
}

/**
 * The document with `record` as the step's record, in its place: a success (`ok: true`) at the
 * top level, anything else in `pending` (which disappears once empty).
 */
export function withStepRecord(doc: DaqDocument, step: string, record: StepRecord): DaqDocument {
  const { [step]: _moved, ...others } = objectOrUndefined(doc.pending) ?? {};
  if (record.ok !== true) return { ...doc, pending: { ...others, [step]: record } as Record<string, StepRecord> };
  const { pending: _pending, ...rest } = doc;
  return { ...rest, [step]: record, ...(Object.keys(others).length > 0 ? { pending: others as Record<string, StepRecord> } : {}) } as DaqDocument;
}
