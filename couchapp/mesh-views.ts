/**
 * The views of `_design/mesh`, each declared once: its name, the map function that emits its
 * rows, its reduce, and the types of the rows (key tuple, value) that callers get back. The
 * store (store/files.ts) queries them by these contracts, never by a name in a string, so a
 * change of key here is a type error where it is read. Every map is ES5 source text (es5.ts).
 */
import type { MeshConfig } from '../config/types.js';
import { RUN_DOC_TYPE } from '../core/run-document.js';
import { HEARTBEAT_TYPE } from '../core/write-rules.js';
import { COMMON_ES5, READY_ES5 } from './es5.js';

export type MapInput = Pick<MeshConfig, 'doc_type' | 'steps'> & Partial<Pick<MeshConfig, 'run_steps'>>;
export type BuiltInReduce = '_count' | '_sum' | '_stats';

/** One view: how it is built, and (types only) what its rows hold. */
export interface ViewContract<K, V> {
  readonly design: 'mesh';
  readonly name: string;
  readonly reduce?: BuiltInReduce;
  map(input: MapInput): string;
  /** Never set: carries the row types for the compiler. */
  readonly rows?: { key: K; value: V };
}

export type KeyOf<C> = C extends ViewContract<infer K, unknown> ? K : never;
export type ValueOf<C> = C extends ViewContract<unknown, infer V> ? V : never;

/** Map source for the pipeline's documents: `body` sees `doc`, the helpers, `STEPS` and `DOC_TYPE`. */
function docMap(body: string | string[]): (input: MapInput) => string {
  const text = Array.isArray(body) ? body.join('\n') : body;
  return (input) =>
    [
      'function (doc) {',
      `  var DOC_TYPE = ${JSON.stringify(input.doc_type)};`,
      `  var STEPS = ${JSON.stringify(input.steps.map((s) => s.name))};`,
      COMMON_ES5 + READY_ES5,
      '  if (doc.type !== DOC_TYPE) return;',
      text,
      '}',
    ].join('\n');
}

function view<K, V>(name: string, map: (input: MapInput) => string, reduce?: BuiltInReduce): ViewContract<K, V> {
  return Object.freeze({ design: 'mesh' as const, name, map, ...(reduce ? { reduce } : {}) });
}

/** A time kept in a `[step, time]` key: an ISO 8601 string, or null when the record has none. */
type KeyTime = string | null;

export const BY_STATUS = view<string, null>('by_status', docMap('  emit(doc.status, null);'), '_count');

/** Ready steps, keyed by when they may run (`retry_after`, '' at once). */
export const READY = view<[step: string, retryAfter: string], null>(
  'ready',
  docMap('  var step = readyStep(doc);\n  if (step !== null) emit([step, record(doc, step).retry_after || ""], null);'),
  '_count',
);

export interface InFlightValue {
  agent: string | null;
  site: string | null;
  attempts: number | null;
  started: string | null;
}

/** Claimed steps (queued or in progress), keyed by the end of their lease. */
export const IN_FLIGHT = view<[step: string, leaseUntil: KeyTime], InFlightValue>(
  'in_flight',
  docMap([
    '  var parsed = parseStatus(doc.status);',
    "  if (!parsed || (parsed.kind !== 'queued' && parsed.kind !== 'in_progress')) return;",
    '  var r = record(doc, parsed.step);',
    '  emit([parsed.step, value(r.lease_until)], { agent: value(r.agent), site: value(r.site), attempts: value(r.attempts), started: value(r.started) });',
  ]),
  '_count',
);

export interface FailedValue {
  reason: string | null;
  exit_code: number | null;
  stderr_tail: string | null;
  run_name: string | null;
  file_number: number | null;
}

/** Steps failed for good. Not `failed`: that name is the original scripts' view, of another shape (original-design.ts). */
export const FAILED_STEPS = view<string, FailedValue>(
  'failed_steps',
  docMap([
    '  var parsed = parseStatus(doc.status);',
    "  if (!parsed || parsed.kind !== 'failed') return;",
    '  var r = record(doc, parsed.step);',
    '  emit(parsed.step, { reason: value(r.reason), exit_code: value(r.exit_code), stderr_tail: value(r.stderr_tail), run_name: value(doc.run_name), file_number: value(doc.file_number) });',
  ]),
  '_count',
);

export const DONE = view<string, null>(
  'done',
  docMap('  for (var i = 0; i < STEPS.length; i++) {\n    if (isDone(doc, STEPS[i])) emit(STEPS[i], null);\n  }'),
  '_count',
);

export interface LostJobValue {
  reason: string;
  system: string | null;
  job: string | null;
  status: string;
}

/** Batch jobs the sweeper found lost (agents/batch/lost-jobs.ts) and not claimed again since. */
export const LOST_JOBS = view<[step: string, started: KeyTime], LostJobValue>(
  'lost_jobs',
  docMap([
    '  for (var i = 0; i < STEPS.length; i++) {',
    '    var r = record(doc, STEPS[i]);',
    "    if (r.ok === false && r.batch && typeof r.reason === 'string' && /^(batch job |no batch job id)/.test(r.reason)) {",
    '      emit([STEPS[i], value(r.started)], { reason: r.reason, system: value(r.batch.system), job: value(r.batch.id), status: doc.status });',
    '    }',
    '  }',
  ]),
  '_count',
);

/** Documents with conflicting revisions (the losing revisions as value). */
export const CONFLICTS = view<string, string[]>('conflicts', docMap('  if (doc._conflicts) emit(doc._id, doc._conflicts);'), '_count');

/** Documents whose double claim the audit resolved (the losing runs are in duplicates[]): replicated, so any server counts them all. */
export const DUPLICATES = view<string, number>(
  'duplicates',
  docMap('  if (Array.isArray(doc.duplicates) && doc.duplicates.length > 0) emit(doc._id, doc.duplicates.length);'),
  '_count',
);

/** [previous step's finish (or date_closed), date_closed, run_name, file_number, duration_s]. */
export type FlowValue = [from: string | null, closed: string | null, run: string | null, file: number | null, durationS: number | null];

/**
 * Flow (coordinator/flow.ts): one row per done step with a finish time (the original scripts'
 * records: their `date`), keyed by its hour so that `group_level: 2` counts files done per step
 * and hour. Dates in ISO 8601 whatever form the document holds them in (core/dates.ts).
 */
export const FLOW = view<[step: string, hour: string, finished: string], FlowValue>(
  'flow',
  docMap([
    '  var closed = isoDate(doc.date_closed);',
    '  for (var i = 0; i < STEPS.length; i++) {',
    '    var finished = isDone(doc, STEPS[i]) ? finishedOf(record(doc, STEPS[i])) : null;',
    '    if (finished === null) continue;',
    '    var from = i === 0 ? closed : finishedOf(record(doc, STEPS[i - 1]));',
    '    emit([STEPS[i], finished.slice(0, 13), finished], [from, closed, value(doc.run_name), value(doc.file_number), value(record(doc, STEPS[i]).duration_s)]);',
    '  }',
  ]),
  '_count',
);

/** Files not yet done for a step, oldest DAQ close first (in ISO 8601): the late ones are a key range. */
export const PENDING = view<[step: string, closed: string], [run: string | null, file: number | null]>(
  'pending',
  docMap([
    '  var closed = isoDate(doc.date_closed);',
    "  if (doc.status === 'bad' || closed === null) return;",
    '  for (var i = 0; i < STEPS.length; i++) {',
    '    if (!isDone(doc, STEPS[i])) emit([STEPS[i], closed], [value(doc.run_name), value(doc.file_number)]);',
    '  }',
  ]),
  '_count',
);

/**
 * Done records by step, the version they were made with (null: the record names none) and
 * run; the value is the bytes of the step's input (the previous step's output `file_size`
 * when it wrote a file, else the raw file's `size_in_bytes`; 0 when unknown). `_stats` gives
 * a group's count and its bytes (`sum`) without a scan: `group_level: 2` per version,
 * `group_level: 3` per version and run. Bad documents are left out (they cannot be reprocessed).
 */
export const BY_VERSION = view<[step: string, version: string | null, run: string | null], number>(
  'by_version',
  docMap([
    "  if (doc.status === 'bad') return;",
    '  for (var i = 0; i < STEPS.length; i++) {',
    '    if (!isDone(doc, STEPS[i])) continue;',
    '    var r = doc[STEPS[i]];',
    '    var previous = i > 0 && isDone(doc, STEPS[i - 1]) ? doc[STEPS[i - 1]] : null;',
    "    var bytes = previous !== null && typeof previous.file === 'string' ? previous.file_size : doc.size_in_bytes;",
    "    emit([STEPS[i], typeof r.version === 'string' ? r.version : null, value(doc.run_name)], typeof bytes === 'number' && isFinite(bytes) && bytes >= 0 ? bytes : 0);",
    '  }',
  ]),
  '_stats',
);

/** Status by run and file number. */
export const BY_RUN = view<[run: string | null, file: number | null], string>(
  'by_run',
  docMap('  emit([value(doc.run_name), value(doc.file_number)], doc.status);'),
);

/** The status page: per DAQ host and run, the highest file number comes from the `_stats` reduce. */
export const BY_HOST_RUN = view<[host: string, run: string | null], number>(
  'by_host_run',
  docMap("  if (typeof doc.file_number === 'number') emit([doc.daq_host || 'unknown', value(doc.run_name)], doc.file_number);"),
  '_stats',
);

/** The status page's search by file name: a prefix range over the file's base name. */
export const BY_FILE_NAME = view<string, null>(
  'by_file_name',
  docMap("  if (typeof doc.file === 'string') emit(doc.file.slice(doc.file.lastIndexOf('/') + 1), null);"),
);

/** The agents' heartbeat documents, by site and name, with when each was last seen. */
export const AGENTS = view<[site: string | null, agent: string | null], string | null>('agents', () =>
  [
    'function (doc) {',
    `  if (doc.type === ${JSON.stringify(HEARTBEAT_TYPE)}) emit([doc.site === undefined ? null : doc.site, doc.agent === undefined ? null : doc.agent], doc.last_seen === undefined ? null : doc.last_seen);`,
    '}',
  ].join('\n'),
);

/** The custody steps and who holds their copy: the step's `to` (an `sftp` step's destination), else the site that ran it (null: its record's `site`). */
function custodySteps(input: MapInput): Array<{ step: string; holder: string | null }> {
  return input.steps.filter((s) => s.custody === true).map((s) => ({ step: s.name, holder: s.to ?? null }));
}

/**
 * Custody due (agents/custody.ts): per custody step done, the site holding the copy when it has
 * no custody record of that step yet, keyed `[site, step]`.
 */
export const CUSTODY_DUE = view<[site: string, step: string], null>('custody_due', (input) =>
  docMap([
    `  var CUSTODY = ${JSON.stringify(custodySteps(input))};`,
    '  var list = Array.isArray(doc.custody) ? doc.custody : [];',
    '  for (var i = 0; i < CUSTODY.length; i++) {',
    '    var step = CUSTODY[i].step;',
    '    if (!isDone(doc, step)) continue;',
    '    var holder = CUSTODY[i].holder !== null ? CUSTODY[i].holder : doc[step].site;',
    "    if (typeof holder !== 'string') continue;",
    '    var held = false;',
    '    for (var j = 0; j < list.length; j++) if (isObject(list[j]) && list[j].site === holder && list[j].step === step) held = true;',
    '    if (!held) emit([holder, step], null);',
    '  }',
  ])(input),
);

/** `[purged?, agreeing copies (-1: a copy disagrees), date_closed]`: the purge's candidates and its cheap estimate. */
export type CopiesKey = [state: 'kept' | 'purged', copies: number, closed: string | null];

/**
 * Every catalogued file by whether the DAQ deleted it and how many distinct sites other than the
 * ingest site hold a copy that agrees with its checksum (its own records only; archives in run
 * documents are counted by `mesh purge` itself), the value its size: `_stats` by `group_level: 2`
 * gives the files and the bytes a purge could free without reading a file (the page's custody line).
 */
export const CUSTODY_COPIES = view<CopiesKey, number>(
  'custody_copies',
  (input: MapInput & { ingest?: { site: string } }) =>
    docMap([
      `  var DAQ_SITE = ${JSON.stringify(input.ingest?.site ?? null)};`,
      "  if (typeof doc.file !== 'string') return;",
      "  var sha = isObject(doc.checksum) && typeof doc.checksum.sha256 === 'string' ? doc.checksum.sha256 : null;",
      '  var list = Array.isArray(doc.custody) ? doc.custody : [];',
      '  var sites = [];',
      '  var disagree = false;',
      '  for (var i = 0; i < list.length; i++) {',
      '    var r = list[i];',
      '    if (!isObject(r) || r.site === DAQ_SITE) continue;',
      '    if (sha === null || r.sha256 !== sha || r.size_in_bytes !== doc.size_in_bytes) disagree = true;',
      '    else if (sites.indexOf(r.site) < 0) sites.push(r.site);',
      '  }',
      "  var size = typeof doc.size_in_bytes === 'number' ? doc.size_in_bytes : 0;",
      "  emit([doc.purged !== undefined ? 'purged' : 'kept', disagree ? -1 : sites.length, isoDate(doc.date_closed)], size);",
    ])(input),
  '_stats',
);

export interface RunDocValue {
  status: string | null;
  members: number;
  late_members: number;
  closed_at: string | null;
}

/**
 * Run documents (core/run-document.ts) by where they stand: `open` (not closed yet), `todo`
 * (closed, a run step not done), `done`, `bad`; then the run name. Agents take their candidates
 * from `todo`; `mesh status` counts by the first key.
 */
export const RUN_DOCS = view<[state: 'open' | 'todo' | 'done' | 'bad', run: string | null], RunDocValue>(
  'run_docs',
  (input) =>
    [
      'function (doc) {',
      `  if (doc.type !== ${JSON.stringify(RUN_DOC_TYPE)}) return;`,
      `  var STEPS = ${JSON.stringify((input.run_steps ?? []).map((s) => s.name))};`,
      COMMON_ES5,
      '  var state = doc.closed_at === undefined ? "open" : doc.status === "bad" ? "bad" : "done";',
      '  for (var i = 0; state === "done" && i < STEPS.length; i++) if (!isDone(doc, STEPS[i])) state = "todo";',
      '  var count = function (list) { return Array.isArray(list) ? list.length : 0; };',
      '  emit([state, doc.run_name === undefined ? null : doc.run_name], { status: doc.status === undefined ? null : doc.status, members: count(doc.members), late_members: count(doc.late_members), closed_at: doc.closed_at === undefined ? null : doc.closed_at });',
      '}',
    ].join('\n'),
  '_count',
);

/** Every view of `_design/mesh`, in the order they are written. */
export const MESH_VIEW_CONTRACTS: readonly ViewContract<unknown, unknown>[] = [
  BY_STATUS,
  READY,
  IN_FLIGHT,
  FAILED_STEPS,
  DONE,
  LOST_JOBS,
  CONFLICTS,
  DUPLICATES,
  FLOW,
  PENDING,
  BY_VERSION,
  BY_RUN,
  BY_HOST_RUN,
  BY_FILE_NAME,
  AGENTS,
  CUSTODY_DUE,
  CUSTODY_COPIES,
  RUN_DOCS,
];

/**
 * Keys `[step, time]`: the rows of `step` up to `until`. `from: ''` leaves out rows without a
 * time (null sorts before every string); without `until` the range runs to the step's end.
 */
export function stepRange(step: string, options: { from?: string; until?: string } = {}): { startkey: unknown[]; endkey: unknown[] } {
  return { startkey: options.from === undefined ? [step] : [step, options.from], endkey: options.until === undefined ? [step, {}] : [step, options.until] };
}
