/**
 * The index of one design document's views on the embedded server, kept like CouchDB keeps
 * it: all views of the design document updated together in one pass over `_changes`, and,
 * for views reduced by `_count` or `_sum`, the reduction of every distinct key stored next to
 * the rows and updated with them. PouchDB's map/reduce does neither (one pass per view, and a
 * reduce reads every row in range), which made `group=true` on a million documents read a
 * million rows. A reduce query now reads one entry per distinct key (view-query.ts).
 *
 * LevelDB layout (strings):
 *   m                      meta: update seq, source database id, row count per view
 *   r<vvv><indexable>      a row of view vvv; indexable = toIndexableString([key, docid(, n)]), value = JSON
 *   g<vvv><indexable key>  reduction of every row with that key: {"c": count, "s": sum}
 *   d<docid>               the rows a document emitted: [[vvv, indexable, value if _sum], …]
 * Each batch of changes is written in one atomic LevelDB batch, update seq included.
 */
import { createRequire } from 'node:module';
import { builtInName, compileMap, deepFreeze } from './view-functions.js';
import { type BatchOp, ViewStore } from './view-store.js';

const require = createRequire(import.meta.url);
const fromMapReduce = createRequire(require.resolve('pouchdb-abstract-mapreduce'));

export const collation = fromMapReduce('pouchdb-collate') as {
  collate(a: unknown, b: unknown): number;
  normalizeKey(key: unknown): unknown;
  toIndexableString(key: unknown): string;
  parseIndexableString(text: string): unknown;
};

/** Bump when the layout or the indexing rules change: indexes of another version are rebuilt. */
export const INDEX_VERSION = 1;
/** Changes read per pass; each becomes one atomic LevelDB batch. */
const CHANGES_BATCH = 1000;

export interface ViewDefinition {
  name: string;
  map: string;
  reduce?: string;
  /** Reductions kept per key: `_count` and `_sum` (integers) have exact inverses, so a deletion can be subtracted. */
  summary?: 'count' | 'sum';
}

export interface SourceChange {
  id: string;
  seq: number | string;
  changes: Array<{ rev: string }>;
  doc?: Record<string, unknown> & { _id: string; _deleted?: boolean };
}

/** The members of a PouchDB database the index uses. */
export interface SourceDatabase {
  name: string;
  changes(opts: Record<string, unknown>): Promise<{ results: SourceChange[]; last_seq: number | string }>;
  id(): Promise<string>;
  allDocs(opts: Record<string, unknown>): Promise<{ rows: Array<{ id: string; doc?: unknown }> }>;
  emit(event: string, ...args: unknown[]): boolean;
}

interface Meta {
  version: number;
  source: string;
  seq: number | string;
  rows: number[];
  /** Views whose per-key reductions are no longer kept (a `_sum` over a value that is not a safe integer). */
  unsummarised: boolean[];
}

export interface Aggregate {
  c: number;
  s: number;
}

const META = 'm';

export function viewTag(index: number): string {
  return String(index).padStart(3, '0');
}
export const rowPrefix = (index: number): string => `r${viewTag(index)}`;
export const summaryPrefix = (index: number): string => `g${viewTag(index)}`;
const docKey = (id: string): string => `d${id}`;

interface EmittedRow {
  key: unknown;
  value: unknown;
}

type BackEntry = [number, string, unknown?];

function isGenerationOne(change: SourceChange): boolean {
  return change.changes.length === 1 && change.changes[0].rev.startsWith('1-');
}

function sortRows(a: EmittedRow, b: EmittedRow): number {
  return collation.collate(a.key, b.key) || collation.collate(a.value, b.value);
}

export class IndexGroup {
  readonly views: ViewDefinition[];
  private meta!: Meta;
  private running?: Promise<void>;
  private queued?: Promise<void>;
  private closed = false;
  private readonly maps: Array<(doc: unknown) => void>;
  private emitted: EmittedRow[] = [];

  private constructor(
    readonly store: ViewStore,
    readonly source: SourceDatabase,
    views: ViewDefinition[],
  ) {
    this.views = views;
    const emit = (key: unknown, value: unknown): void => {
      this.emitted.push({ key: collation.normalizeKey(key), value: value === undefined || value === null ? null : collation.normalizeKey(value) });
    };
    this.maps = views.map((view) => compileMap(view.map, emit));
  }

  static async open(location: string, source: SourceDatabase, views: ViewDefinition[]): Promise<IndexGroup> {
    const store = await ViewStore.open(location);
    const group = new IndexGroup(store, source, views);
    try {
      await group.loadMeta();
    } catch (error) {
      await store.close();
      throw error;
    }
    return group;
  }

  private async loadMeta(): Promise<void> {
    const sourceId = await this.source.id();
    const stored = await this.store.get(META);
    const meta = stored ? (JSON.parse(stored) as Meta) : undefined;
    if (meta && meta.version === INDEX_VERSION && meta.source === sourceId && meta.rows.length === this.views.length) {
      this.meta = meta;
      return;
    }
    // A new index, or one left by another database of the same name or another version: start over.
    const ops: BatchOp[] = [];
    await this.store.scan({}, (key) => void ops.push({ type: 'del', key }));
    this.meta = { version: INDEX_VERSION, source: sourceId, seq: 0, rows: this.views.map(() => 0), unsummarised: this.views.map(() => false) };
    ops.push({ type: 'put', key: META, value: JSON.stringify(this.meta) });
    await this.store.batch(ops);
  }

  get seq(): number | string {
    return this.meta.seq;
  }

  totalRows(index: number): number {
    return this.meta.rows[index];
  }

  /** Whether reduce queries of this view may read the per-key reductions. */
  summarised(index: number): boolean {
    return this.views[index].summary !== undefined && !this.meta.unsummarised[index];
  }

  /**
   * Brings the index up to the source's latest change. Callers that arrive while an update runs
   * share the next one, so every caller sees the changes made before it asked.
   */
  update(): Promise<void> {
    if (this.queued) return this.queued;
    const previous = this.running ?? Promise.resolve();
    const next: Promise<void> = previous
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        this.running = next;
        return this.catchUp();
      })
      .finally(() => {
        if (this.running === next) this.running = undefined;
      });
    this.queued = next;
    return next;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([this.running, this.queued]);
    await this.store.close();
  }

  private async catchUp(): Promise<void> {
    while (!this.closed) {
      const batch = await this.source.changes({
        since: this.meta.seq,
        limit: CHANGES_BATCH,
        include_docs: true,
        conflicts: true,
        style: 'all_docs',
        return_docs: true,
      });
      if (batch.results.length === 0) return;
      await this.apply(batch.results, batch.last_seq);
      this.source.emit('indexing', { last_seq: batch.last_seq, results_count: batch.results.length });
      if (batch.results.length < CHANGES_BATCH) return;
    }
  }

  /** Rows of every view for one document, sorted as PouchDB sorts them, duplicates numbered. */
  private mapDocument(doc: Record<string, unknown> & { _id: string }): BackEntry[] {
    const entries: BackEntry[] = [];
    deepFreeze(doc);
    this.maps.forEach((map, index) => {
      this.emitted = [];
      try {
        map(doc);
      } catch (error) {
        try {
          this.source.emit('error', error);
        } catch {
          // No listener: PouchDB's map/reduce also keeps the rows emitted before the error.
        }
      }
      const rows = this.emitted.sort(sortRows);
      let lastKey: unknown;
      rows.forEach((row, i) => {
        const complex: unknown[] = [row.key, doc._id];
        if (i > 0 && collation.collate(row.key, lastKey) === 0) complex.push(i);
        lastKey = row.key;
        entries.push([index, collation.toIndexableString(complex), row.value]);
      });
    });
    return entries;
  }

  private async apply(results: SourceChange[], lastSeq: number | string): Promise<void> {
    const latest = new Map<string, SourceChange>();
    for (const change of results) if (change.id[0] !== '_' && change.doc) latest.set(change.id, change);
    const changes = [...latest.values()];
    const lookups = changes.filter((c) => !isGenerationOne(c));
    const stored = await this.store.getMany(lookups.map((c) => docKey(c.id)));
    const previous = new Map<string, BackEntry[]>();
    lookups.forEach((c, i) => {
      if (stored[i] !== undefined) previous.set(c.id, JSON.parse(stored[i] as string) as BackEntry[]);
    });

    const ops: BatchOp[] = [];
    const deltas = new Map<string, Aggregate>();
    const abandoned = new Set<number>();
    // The new meta is built aside and takes effect only once its batch is committed: a failed
    // batch must leave the index where it was, so that the next pass applies these changes again.
    const rowCounts = [...this.meta.rows];
    const unsummarised = [...this.meta.unsummarised];
    const summarised = (index: number): boolean => this.views[index].summary !== undefined && !unsummarised[index];
    const account = (index: number, rowKey: string, value: unknown, sign: 1 | -1): void => {
      rowCounts[index] += sign;
      if (!summarised(index)) return;
      const view = this.views[index];
      if (view.summary === 'sum' && !(typeof value === 'number' && Number.isSafeInteger(value))) {
        // Subtracting floats is not exact and arrays change length: reduce this view from its rows from now on.
        unsummarised[index] = true;
        abandoned.add(index);
        return;
      }
      const key = (collation.parseIndexableString(rowKey) as unknown[])[0];
      const summaryKey = summaryPrefix(index) + collation.toIndexableString(key);
      const delta = deltas.get(summaryKey) ?? { c: 0, s: 0 };
      delta.c += sign;
      if (view.summary === 'sum') delta.s += sign * (value as number);
      deltas.set(summaryKey, delta);
    };

    for (const change of changes) {
      const doc = change.doc as Record<string, unknown> & { _id: string; _deleted?: boolean };
      const now = doc._deleted ? [] : this.mapDocument(doc);
      const before = previous.get(change.id) ?? [];
      const kept = new Set(now.map(([index, rowKey]) => rowPrefix(index) + rowKey));
      for (const [index, rowKey, value] of before) {
        if (!kept.has(rowPrefix(index) + rowKey)) ops.push({ type: 'del', key: rowPrefix(index) + rowKey });
        account(index, rowKey, value, -1);
      }
      for (const [index, rowKey, value] of now) {
        ops.push({ type: 'put', key: rowPrefix(index) + rowKey, value: JSON.stringify(value ?? null) });
        account(index, rowKey, value, 1);
      }
      if (now.length > 0) {
        ops.push({
          type: 'put',
          key: docKey(change.id),
          value: JSON.stringify(now.map(([index, rowKey, value]) => (this.views[index].summary === 'sum' ? [index, rowKey, value] : [index, rowKey]))),
        });
      } else if (before.length > 0) {
        ops.push({ type: 'del', key: docKey(change.id) });
      }
    }

    const touched = [...deltas].filter(([key, d]) => (d.c !== 0 || d.s !== 0) && summarised(Number(key.slice(1, 4))));
    const current = await this.store.getMany(touched.map(([key]) => key));
    touched.forEach(([key, delta], i) => {
      const was = current[i] === undefined ? { c: 0, s: 0 } : (JSON.parse(current[i] as string) as Aggregate);
      const next = { c: was.c + delta.c, s: was.s + delta.s };
      if (next.c === 0) ops.push({ type: 'del', key });
      else ops.push({ type: 'put', key, value: JSON.stringify(next) });
    });
    for (const index of abandoned) {
      await this.store.scan({ gte: summaryPrefix(index), lt: summaryPrefix(index + 1) }, (key) => void ops.push({ type: 'del', key }));
    }
    const meta: Meta = { ...this.meta, rows: rowCounts, seq: lastSeq, unsummarised };
    ops.push({ type: 'put', key: META, value: JSON.stringify(meta) });
    await this.store.batch(ops);
    this.meta = meta;
  }
}

/** The view definitions of a design document, in a stable order, with the reductions kept per key. */
export function viewDefinitions(views: Record<string, { map?: unknown; reduce?: unknown }>): ViewDefinition[] {
  return Object.keys(views)
    .sort()
    .filter((name) => typeof views[name].map === 'string')
    .map((name) => {
      const reduce = typeof views[name].reduce === 'string' ? (views[name].reduce as string) : undefined;
      const builtIn = reduce === undefined ? undefined : builtInName(reduce);
      const summary = builtIn === '_count' ? 'count' : builtIn === '_sum' ? 'sum' : undefined;
      return { name, map: views[name].map as string, reduce, summary };
    });
}
