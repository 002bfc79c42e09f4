/**
 * View queries over an IndexGroup, with CouchDB's options (key, keys, startkey/endkey,
 * inclusive_end, descending, limit, skip, include_docs, conflicts, reduce, group, group_level,
 * update_seq). A reduce over a view whose reductions are kept per key reads one entry per
 * distinct key in range instead of every row; other reduces read the rows, as PouchDB does.
 */
import { type Aggregate, type IndexGroup, collation, rowPrefix, summaryPrefix } from './view-index.js';
import { BuiltInError, compileReduce } from './view-functions.js';
import type { KeyRange } from './view-store.js';

export interface ViewQuery {
  key?: unknown;
  keys?: unknown[];
  startkey?: unknown;
  endkey?: unknown;
  inclusive_end?: boolean;
  descending?: boolean;
  limit?: number;
  skip?: number;
  include_docs?: boolean;
  conflicts?: boolean;
  reduce?: boolean;
  group?: boolean;
  group_level?: number;
  update_seq?: boolean;
}

export interface ViewRow {
  id?: string;
  key: unknown;
  value: unknown;
  doc?: unknown;
}

export interface ViewResult {
  total_rows?: number;
  offset?: number;
  rows: ViewRow[];
  update_seq?: number | string;
}

const idx = (key: unknown): string => collation.toIndexableString(key);

/** LevelDB bounds for `encode(key)` entries under `prefix`, as CouchDB reads a key range. */
function range(prefix: string, next: string, q: ViewQuery, encodeLow: (k: unknown) => string, encodeHigh: (k: unknown) => string): KeyRange {
  if (q.key !== undefined) return { gte: prefix + encodeLow(q.key), lte: prefix + encodeHigh(q.key), reverse: q.descending === true };
  const inclusive = q.inclusive_end !== false;
  const bounds: KeyRange = {};
  if (!q.descending) {
    if (q.startkey !== undefined) bounds.gte = prefix + encodeLow(q.startkey);
    else bounds.gte = prefix;
    if (q.endkey === undefined) bounds.lt = next;
    else if (inclusive) bounds.lte = prefix + encodeHigh(q.endkey);
    else bounds.lt = prefix + encodeLow(q.endkey);
  } else {
    bounds.reverse = true;
    if (q.startkey !== undefined) bounds.lte = prefix + encodeHigh(q.startkey);
    else bounds.lt = next;
    if (q.endkey === undefined) bounds.gte = prefix;
    else if (inclusive) bounds.gte = prefix + encodeLow(q.endkey);
    else bounds.gt = prefix + encodeHigh(q.endkey);
  }
  return bounds;
}

/** Row ranges: rows are `[key, docid]`, so a key spans `[key]` … `[key, {}]`. */
function rowRange(index: number, q: ViewQuery): KeyRange {
  return range(
    rowPrefix(index),
    rowPrefix(index + 1),
    q,
    (k) => idx([k]),
    (k) => idx([k, {}]),
  );
}

/** Per-key reduction ranges: entries are the key itself. */
function summaryRange(index: number, q: ViewQuery): KeyRange {
  return range(summaryPrefix(index), summaryPrefix(index + 1), q, idx, idx);
}

async function readRows(group: IndexGroup, index: number, bounds: KeyRange, skip = 0, limit = Infinity): Promise<ViewRow[]> {
  const rows: ViewRow[] = [];
  if (limit <= 0) return rows;
  const prefixLength = rowPrefix(index).length;
  let skipped = 0;
  await group.store.scan(bounds, (key, value) => {
    if (skipped < skip) {
      skipped++;
      return true;
    }
    const [rowKey, id] = collation.parseIndexableString(key.slice(prefixLength)) as [unknown, string];
    rows.push({ id, key: rowKey, value: JSON.parse(value) as unknown });
    return rows.length < limit;
  });
  return rows;
}

async function readSummaries(group: IndexGroup, index: number, q: ViewQuery): Promise<Array<{ key: unknown; aggregate: Aggregate }>> {
  const prefix = summaryPrefix(index);
  const entries: Array<{ key: unknown; aggregate: Aggregate }> = [];
  if (q.keys !== undefined) {
    const stored = await group.store.getMany(q.keys.map((k) => prefix + idx(k)));
    stored.forEach((value, i) => {
      if (value !== undefined) entries.push({ key: collation.normalizeKey(q.keys?.[i]), aggregate: JSON.parse(value) as Aggregate });
    });
    return entries;
  }
  await group.store.scan(summaryRange(index, q), (key, value) => {
    entries.push({ key: collation.parseIndexableString(key.slice(prefix.length)), aggregate: JSON.parse(value) as Aggregate });
  });
  return entries;
}

function slice<T>(items: T[], limit: number | undefined, skip: number | undefined): T[] {
  const from = skip ?? 0;
  return typeof limit === 'number' ? items.slice(from, from + limit) : items.slice(from);
}

/** Consecutive items whose keys are equal at the group level, as PouchDB and CouchDB group them. */
function groups<T extends { key: unknown }>(items: T[], q: ViewQuery): Array<{ key: unknown; items: T[] }> {
  const level = q.group_level === 0 ? undefined : q.group_level;
  const grouped = q.group === true || level !== undefined;
  const depth = level === undefined ? Infinity : level;
  const out: Array<{ key: unknown; items: T[] }> = [];
  for (const item of items) {
    let key = grouped ? item.key : null;
    if (grouped && Array.isArray(key)) key = key.slice(0, depth);
    const last = out[out.length - 1];
    if (last && collation.collate(last.key, key) === 0) last.items.push(item);
    else out.push({ key, items: [item] });
  }
  return out;
}

async function reduceQuery(group: IndexGroup, index: number, q: ViewQuery): Promise<ViewRow[]> {
  const view = group.views[index];
  if (group.summarised(index)) {
    const field: keyof Aggregate = view.summary === 'sum' ? 's' : 'c';
    const reduced = groups(await readSummaries(group, index, q), q).map((g) => ({
      key: g.key,
      value: g.items.reduce((total, e) => total + e.aggregate[field], 0),
    }));
    return slice(reduced, q.limit, q.skip);
  }
  const rows: ViewRow[] = [];
  if (q.keys !== undefined) {
    for (const key of q.keys) rows.push(...(await readRows(group, index, rowRange(index, { key }))));
  } else {
    rows.push(...(await readRows(group, index, rowRange(index, q))));
  }
  const reduce = compileReduce(view.reduce as string);
  const reduced = groups(rows, q).map((g) => {
    try {
      return {
        key: g.key,
        value: reduce(
          g.items.map((r) => [r.key, r.id]),
          g.items.map((r) => r.value),
          false,
        ),
      };
    } catch (error) {
      if (error instanceof BuiltInError) throw error;
      return { key: g.key, value: null }; // CouchDB answers null when a custom reduce throws
    }
  });
  return slice(reduced, q.limit, q.skip);
}

async function attachDocs(group: IndexGroup, rows: ViewRow[], q: ViewQuery): Promise<void> {
  const docId = (row: ViewRow): string => {
    const value = row.value as { _id?: unknown } | null;
    return value && typeof value === 'object' && typeof value._id === 'string' ? value._id : (row.id as string);
  };
  const ids = [...new Set(rows.map(docId))];
  if (ids.length === 0) return;
  const found = await group.source.allDocs({ keys: ids, include_docs: true, conflicts: q.conflicts });
  const docs = new Map(found.rows.map((r) => [r.id, r.doc]));
  for (const row of rows) {
    const doc = docs.get(docId(row));
    if (doc) row.doc = doc;
  }
}

/** One query of view `index` as the index stands now (the caller decides whether to update it first). */
export async function queryIndex(group: IndexGroup, index: number, query: ViewQuery): Promise<ViewResult> {
  const q: ViewQuery = { ...query };
  if (q.keys !== undefined && q.keys.length === 0) {
    q.limit = 0;
    delete q.keys;
  }
  let result: ViewResult;
  if (group.views[index].reduce !== undefined && q.reduce !== false) {
    result = { rows: await reduceQuery(group, index, q) };
  } else {
    let rows: ViewRow[];
    if (q.keys !== undefined) {
      rows = [];
      for (const key of q.keys) rows.push(...(await readRows(group, index, rowRange(index, { key }))));
      rows = slice(rows, q.limit, q.skip);
    } else {
      rows = await readRows(group, index, rowRange(index, q), q.skip ?? 0, q.limit ?? Infinity);
    }
    if (q.include_docs) await attachDocs(group, rows, q);
    result = { total_rows: group.totalRows(index), offset: q.skip ?? 0, rows };
  }
  if (q.update_seq) result.update_seq = group.seq;
  return result;
}
