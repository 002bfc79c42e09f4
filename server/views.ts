/**
 * Map/reduce for the embedded server, replacing PouchDB's `query`/`viewCleanup` (Apache CouchDB
 * has its own view engine). Design-document views go through view-index.ts: one index per
 * design document, updated in one pass, with `_count`/`_sum` reductions kept per key so a
 * reduce reads one entry per distinct key. Temporary views keep PouchDB's engine, with
 * functions compiled once (PouchDB's Node build re-serialises each document into a fresh `vm`
 * context per map call, about 4 ms a document and view).
 *
 * `stale=ok` / `update=false` answer from the index as it is; `stale=update_after` /
 * `update=lazy` answer, then update; anything else updates first, as CouchDB does.
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { compileMap, compileReduce } from './view-functions.js';
import { INDEX_VERSION, IndexGroup, type SourceDatabase, type ViewDefinition, collation, viewDefinitions } from './view-index.js';
import { type ViewQuery, type ViewResult, queryIndex } from './view-query.js';
import { ViewStore } from './view-store.js';

const require = createRequire(import.meta.url);
const fromMapReduce = createRequire(require.resolve('pouchdb-abstract-mapreduce'));
const { NotFoundError, QueryParseError } = fromMapReduce('pouchdb-mapreduce-utils') as {
  NotFoundError: new (message: string) => Error;
  QueryParseError: new (message: string) => Error;
};

type Mapper = (source: string | ((doc: unknown) => void), emit: (key: unknown, value: unknown) => void) => (doc: unknown) => void;
type Reducer = (source: string) => (keys: unknown, values: unknown[], rereduce: boolean) => unknown;
type Callback = (error: unknown, result?: unknown) => void;
interface MapReducePlugin {
  query(this: unknown, fun: unknown, opts?: unknown, callback?: Callback): Promise<unknown>;
  viewCleanup(this: unknown, callback?: Callback): Promise<unknown>;
}
const createAbstractMapReduce = require('pouchdb-abstract-mapreduce') as (
  localDocName: string,
  mapper: Mapper,
  reducer: Reducer,
  ddocValidator: (ddoc: { _id: string; views?: Record<string, { map?: unknown }> }, viewName: string) => void,
) => MapReducePlugin;

const mapper: Mapper = (source, emit) => {
  if (typeof source === 'function') return (doc) => (source as (d: unknown, e: typeof emit) => void)(doc, emit);
  const fn = compileMap(source, emit);
  return (doc) => fn(JSON.parse(JSON.stringify(doc)));
};

function ddocValidator(ddoc: { _id: string; views?: Record<string, { map?: unknown }> }, viewName: string): void {
  const view = ddoc.views?.[viewName];
  if (typeof view?.map !== 'string') {
    throw Object.assign(new Error(`ddoc ${ddoc._id} has no string view named ${viewName}, instead found object of type: ${typeof view?.map}`), {
      status: 404,
      name: 'not_found',
    });
  }
}

/** PouchDB's engine, for temporary views only. */
const temporaryViews = createAbstractMapReduce('mrviews', mapper, compileReduce, ddocValidator);

interface PluginDatabase extends SourceDatabase {
  __opts: { prefix?: string };
  get(id: string): Promise<{ _id: string; views?: Record<string, { map?: unknown; reduce?: unknown }> }>;
  once(event: string, listener: () => void): void;
}

const groups = new Map<string, Promise<IndexGroup>>();

function indexName(db: PluginDatabase, views: ViewDefinition[]): string {
  const signature = createHash('md5')
    .update(JSON.stringify({ version: INDEX_VERSION, views }))
    .digest('hex');
  return `${db.name}-mrview-mesh-${signature}`;
}

function indexGroup(db: PluginDatabase, views: ViewDefinition[]): Promise<IndexGroup> {
  const location = (db.__opts.prefix ?? '') + indexName(db, views);
  let group = groups.get(location);
  if (!group) {
    group = IndexGroup.open(location, db, views);
    groups.set(location, group);
    group.catch(() => groups.delete(location));
    const forget = (destroy: boolean) => async () => {
      if (groups.get(location) !== group) return;
      groups.delete(location);
      await (await group!.catch(() => undefined))?.close().catch(() => undefined);
      if (destroy) await ViewStore.destroy(location).catch(() => undefined);
    };
    db.once('closed', () => void forget(false)());
    db.once('destroyed', () => void forget(true)());
  }
  return group;
}

function coerceInteger(value: unknown): unknown {
  if (value === undefined) return undefined;
  const n = Number(value);
  return !Number.isNaN(n) && n === parseInt(String(value), 10) ? n : value;
}

/** PouchDB's (and CouchDB's) checks of a view query's options. */
function checkQuery(q: Record<string, unknown>, view: { reduce?: unknown }): void {
  const startName = q.descending ? 'endkey' : 'startkey';
  const endName = q.descending ? 'startkey' : 'endkey';
  if (q[startName] !== undefined && q[endName] !== undefined && collation.collate(q[startName], q[endName]) > 0) {
    throw new QueryParseError('No rows can match your key range, reverse your start_key and end_key or set {descending : true}');
  }
  if (view.reduce && q.reduce !== false) {
    if (q.include_docs) throw new QueryParseError('{include_docs:true} is invalid for reduce');
    if (Array.isArray(q.keys) && q.keys.length > 1 && !q.group && !q.group_level)
      throw new QueryParseError('Multi-key fetches for reduce views must use {group: true}');
  }
  for (const name of ['group_level', 'limit', 'skip']) {
    const n = q[name];
    if (n === undefined || n === 0) continue;
    if (typeof n !== 'number') throw new QueryParseError(`Invalid value for integer: "${String(n)}"`);
    if (n < 0) throw new QueryParseError(`Invalid value for positive integer: "${n}"`);
  }
}

function normaliseOptions(raw: Record<string, unknown>): Record<string, unknown> {
  const q = { ...raw };
  for (const name of ['group_level', 'limit', 'skip']) q[name] = coerceInteger(q[name]);
  if ('start_key' in q && !('startkey' in q)) q.startkey = q.start_key;
  if ('end_key' in q && !('endkey' in q)) q.endkey = q.end_key;
  return q;
}

type UpdateMode = 'before' | 'none' | 'after';

function updateMode(q: Record<string, unknown>): UpdateMode {
  if (q.stale === 'ok' || q.update === false || q.update === 'false') return 'none';
  if (q.stale === 'update_after' || q.update === 'lazy') return 'after';
  return 'before';
}

async function persistentQuery(db: PluginDatabase, fullName: string, raw: Record<string, unknown>): Promise<ViewResult> {
  const [ddocName, viewName] = fullName.includes('/') ? fullName.split('/') : [fullName, fullName];
  const ddoc = await db.get(`_design/${ddocName}`);
  const view = ddoc.views?.[viewName];
  if (!view) throw new NotFoundError(`ddoc ${ddoc._id} has no view named ${viewName}`);
  ddocValidator(ddoc, viewName);
  const q = normaliseOptions(raw);
  checkQuery(q, view);
  const definitions = viewDefinitions(ddoc.views ?? {});
  const group = await indexGroup(db, definitions);
  const mode = updateMode(q);
  if (mode === 'before') await group.update();
  const result = await queryIndex(
    group,
    definitions.findIndex((d) => d.name === viewName),
    q as ViewQuery,
  );
  // A failed background update is retried by the next query that updates.
  if (mode === 'after') group.update().catch(() => undefined);
  return result;
}

function settle(promise: Promise<unknown>, callback?: Callback): Promise<unknown> {
  if (callback)
    promise.then(
      (result) => callback(null, result),
      (error: unknown) => callback(error),
    );
  return promise;
}

/** Removes the indexes of design documents that changed or are gone, then PouchDB's own. */
async function cleanUp(db: PluginDatabase): Promise<unknown> {
  const prefix = db.__opts.prefix ?? '';
  const location = prefix + db.name;
  const ddocs = await db.allDocs({ startkey: '_design/', endkey: '_design/\uffff', include_docs: true });
  const wanted = new Set(
    ddocs.rows.flatMap((row) => {
      const views = (row.doc as { views?: Record<string, { map?: unknown; reduce?: unknown }> } | undefined)?.views;
      return views ? [prefix + indexName(db, viewDefinitions(views))] : [];
    }),
  );
  const ours = `${basename(location)}-mrview-mesh-`;
  for (const entry of await readdir(dirname(location)).catch(() => [] as string[])) {
    const path = join(dirname(location), entry);
    if (!entry.startsWith(ours) || wanted.has(path)) continue;
    const open = groups.get(path);
    groups.delete(path);
    await (await open?.catch(() => undefined))?.close();
    await ViewStore.destroy(path);
  }
  return temporaryViews.viewCleanup.call(db);
}

/** The plugin: `PouchDB.plugin(fastViews)` before any database is opened. */
export const fastViews = {
  query(this: PluginDatabase, fun: unknown, opts?: unknown, callback?: Callback): Promise<unknown> {
    if (typeof opts === 'function') {
      callback = opts as Callback;
      opts = {};
    }
    // Temporary views, and databases on another server (PouchDB's engine sends those over HTTP).
    if (typeof fun !== 'string' || /^https?$/.test(String((this as { adapter?: unknown }).adapter)))
      return temporaryViews.query.call(this, fun, opts, callback);
    return settle(persistentQuery(this, fun, (opts ?? {}) as Record<string, unknown>), callback);
  },
  viewCleanup(this: PluginDatabase, callback?: Callback): Promise<unknown> {
    return settle(cleanUp(this), callback);
  },
};
