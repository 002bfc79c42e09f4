/**
 * The table of `_design/proc` (docs/document.md, "The couchapp"), written out again independently of the
 * generator: nothing here imports couchapp/. `expected` gives the rows each view emits for one
 * document, `viewAnswer` a whole view as CouchDB answers it (rows by key, then id), `statusGroups`
 * and `daqdocStats` the two reductions, `expectedNewproc0` and `expectedStatusgood` the filters.
 * The unit test holds the generated functions to it on hand-built documents
 * (test/unit/original-design.test.ts), an integration test on the documents of a real run
 * (test/integration/original-views-run.test.ts).
 */
import { type LooseDoc, ORIGINAL_DOC_TYPE as DOC_TYPE } from './original-docs.js';

/** One emitted row: [key, value]. */
export type Row = [unknown, unknown];

/** A row of a view's answer over HTTP. */
export interface ViewRow {
  id: string;
  key: unknown;
  value: unknown;
}

/** `RF`: `<run_name>_<file_number on at least 3 digits>`, or undefined for a document the views do not see. */
export function rf(doc: LooseDoc): string | undefined {
  if (doc.type !== DOC_TYPE || typeof doc.run_name !== 'string' || doc.run_name === '') return undefined;
  const n = doc.file_number;
  const digits = typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? String(n) : typeof n === 'string' && /^\d+$/.test(n) ? n : undefined;
  return digits === undefined ? undefined : `${doc.run_name}_${digits.padStart(3, '0')}`;
}

/** A step is present when the document has a truthy record of its name at the top level. */
export const has = (doc: LooseDoc, step: string): boolean => Object.hasOwn(doc, step) && Boolean(doc[step]);

export function viewNames(steps: readonly string[]): string[] {
  return [...steps, ...steps.map((s) => `${s}inprogress`), 'inqueue', 'inprogress', 'failed', 'bad', 'status', 'statusbyrun', 'daqdoc', 'raw', 'procbyrun'];
}

/** The rows each view should emit for `doc`. */
export function expected(doc: LooseDoc, steps: readonly string[]): Record<string, Row[]> {
  const rows: Record<string, Row[]> = Object.fromEntries(viewNames(steps).map((name) => [name, []]));
  const key = rf(doc);
  if (key === undefined) return rows;
  const status = typeof doc.status === 'string' ? doc.status : undefined;
  steps.forEach((step, k) => {
    const before = steps.slice(0, k).every((s) => has(doc, s));
    if (status === (k === 0 ? 'closed' : 'good') && before && !has(doc, step)) rows[step].push([key, 1]);
    if (status === `${step} in progress`) rows[`${step}inprogress`].push([key, 1]);
  });
  if (status?.includes('queued')) rows.inqueue.push([key, status]);
  if (status?.includes('in progress')) rows.inprogress.push([key, status]);
  if (status?.includes('failed')) rows.failed.push([key, status]);
  if (status?.includes('bad')) rows.bad.push([key, 1]);
  if (status !== undefined) {
    rows.status.push([[status, key], 1]);
    rows.statusbyrun.push([key, status]);
  }
  rows.daqdoc.push([key, 1]);
  if (status === 'good' && steps.length > 1 && has(doc, steps[1])) rows.raw.push([key, 1]);
  let last = -1;
  while (last + 1 < steps.length && has(doc, steps[last + 1])) last++;
  rows.procbyrun.push([[key, last >= 0 ? steps[last] : 'mixed_state'], doc.status ?? null]);
  return rows;
}

export const expectedNewproc0 = (doc: LooseDoc, steps: readonly string[]): boolean => doc.type === DOC_TYPE && doc.status === 'closed' && !has(doc, steps[0]);
export const expectedStatusgood = (doc: LooseDoc): boolean => doc.status === 'good';

// ---- Whole views, as CouchDB answers them ----------------------------------------------------

const RANK = (value: unknown): number =>
  value === null ? 0 : value === false ? 1 : value === true ? 2 : typeof value === 'number' ? 3 : typeof value === 'string' ? 4 : Array.isArray(value) ? 5 : 6;

/**
 * CouchDB's collation of keys: null, false, true, numbers, strings, arrays (element by element,
 * the shorter first), objects. Strings go by UTF-16 code unit; CouchDB's ICU order is the same
 * for keys that first differ at a lower-case letter or a digit, the only keys the tests compare.
 */
export function collate(a: unknown, b: unknown): number {
  const ranks = RANK(a) - RANK(b);
  if (ranks !== 0) return ranks;
  if (typeof a === 'number') return a - (b as number);
  if (typeof a === 'string') return a < (b as string) ? -1 : a > (b as string) ? 1 : 0;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    for (let i = 0; i < Math.min(a.length, other.length); i++) {
      const c = collate(a[i], other[i]);
      if (c !== 0) return c;
    }
    return a.length - other.length;
  }
  return 0;
}

/** The rows of `view` over `docs` (`reduce=false` for a reduced view), by key, then id. */
export function viewAnswer(docs: readonly LooseDoc[], steps: readonly string[], view: string): ViewRow[] {
  const rows = docs.flatMap((doc) => (expected(doc, steps)[view] ?? []).map(([key, value]) => ({ id: doc._id, key, value })));
  return rows.sort((a, b) => collate(a.key, b.key) || collate(a.id, b.id));
}

/** `status?group_level=1`: documents per status, by status. */
export function statusGroups(docs: readonly LooseDoc[], steps: readonly string[]): Array<{ key: [string]; value: number }> {
  const counts = new Map<string, number>();
  for (const row of viewAnswer(docs, steps, 'status')) {
    const [status] = row.key as [string];
    counts.set(status, (counts.get(status) ?? 0) + (row.value as number));
  }
  return [...counts].map(([status, value]) => ({ key: [status] as [string], value }));
}

/** `daqdoc` reduced: `_stats` of its values (every one 1). */
export function daqdocStats(docs: readonly LooseDoc[], steps: readonly string[]): { sum: number; count: number; min: number; max: number; sumsqr: number } {
  const values = viewAnswer(docs, steps, 'daqdoc').map((row) => row.value as number);
  return {
    sum: values.reduce((s, v) => s + v, 0),
    count: values.length,
    min: Math.min(...values),
    max: Math.max(...values),
    sumsqr: values.reduce((s, v) => s + v * v, 0),
  };
}
