/**
 * CouchDB 3's `/_scheduler/docs`, read from the `_replicator` documents that pouchdb-replicator
 * annotates (`_replication_state`, `_replication_id`, `_replication_state_time`,
 * `_replication_state_reason`). Only server admins reach it (access.ts).
 *
 * What it answers, per document: `database`, `doc_id`, `id` (the replication id or null),
 * `source` and `target` (URLs without credentials), `state` in CouchDB's vocabulary, `info`,
 * `error_count`, `last_updated`, `start_time`. Differences from CouchDB: `info.changes_pending`
 * is always null (CouchDB's is often null as well, cached for up to 30 s), `node` is the embedded
 * server's, and a job pouchdb-replicator took for a duplicate of another (it never runs) is
 * `failed` with a reason saying so.
 */
import express, { type Request, type Response, type Router } from 'express';
import { openExistingDb, type ExpressPouchApp, type PouchStatic } from './pouch.js';
import { sendCouchError, sendJson } from './respond.js';

const REPLICATOR = '_replicator';
const NODE = 'nonode@embedded';

type Endpoint = string | { url?: unknown } | undefined;

interface ReplicatorDoc {
  _id: string;
  source?: Endpoint;
  target?: Endpoint;
  _replication_state?: unknown;
  _replication_id?: unknown;
  _replication_state_time?: unknown;
  _replication_state_reason?: unknown;
  _replication_stats?: unknown;
  [field: string]: unknown;
}

export interface SchedulerDoc {
  database: string;
  doc_id: string;
  id: string | null;
  node: string;
  source: string | null;
  target: string | null;
  state: string;
  info: Record<string, unknown> | null;
  error_count: number;
  last_updated: string | null;
  start_time: string | null;
}

/** An endpoint's URL with any user and password removed (CouchDB never shows them here). */
export function endpointUrl(endpoint: Endpoint): string | null {
  const raw = typeof endpoint === 'string' ? endpoint : typeof endpoint?.url === 'string' ? endpoint.url : undefined;
  if (raw === undefined) return null;
  try {
    const url = new URL(raw);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    // A local database name, not a URL.
    return raw;
  }
}

/** pouchdb-replicator's annotations → CouchDB 3's scheduler state and info. */
export function schedulerState(doc: ReplicatorDoc): { state: string; info: Record<string, unknown> | null; errorCount: number } {
  const field = doc._replication_state;
  const reason = typeof doc._replication_state_reason === 'string' ? doc._replication_state_reason : undefined;
  if (field === 'triggered') return { state: 'running', info: { changes_pending: null }, errorCount: 0 };
  if (field === 'completed')
    return {
      state: 'completed',
      info: typeof doc._replication_stats === 'object' && doc._replication_stats !== null ? { ...(doc._replication_stats as object) } : {},
      errorCount: 0,
    };
  if (field === 'error') return { state: 'crashing', info: { error: reason ?? 'replication error' }, errorCount: 1 };
  if (doc._replication_id !== undefined)
    return {
      state: 'failed',
      info: { error: 'taken for a duplicate of another replication job; it will never run (rewrite the document to start it)' },
      errorCount: 1,
    };
  return { state: 'initializing', info: null, errorCount: 0 };
}

export function schedulerDoc(doc: ReplicatorDoc): SchedulerDoc {
  const { state, info, errorCount } = schedulerState(doc);
  const time = typeof doc._replication_state_time === 'string' ? doc._replication_state_time : null;
  return {
    database: REPLICATOR,
    doc_id: doc._id,
    id: typeof doc._replication_id === 'string' ? doc._replication_id : null,
    node: NODE,
    source: endpointUrl(doc.source),
    target: endpointUrl(doc.target),
    state,
    info,
    error_count: errorCount,
    last_updated: time,
    start_time: time,
  };
}

function count(value: unknown, fallback: number): number {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : fallback;
}

export function schedulerRouter(app: ExpressPouchApp, pouch: PouchStatic): Router {
  const router = express.Router({ caseSensitive: true });

  const jobs = async (): Promise<SchedulerDoc[]> => {
    const db = await openExistingDb(app, pouch, REPLICATOR);
    if (!db) return [];
    const all = (await (db as unknown as { allDocs(o: object): Promise<{ rows: Array<{ id: string; doc?: ReplicatorDoc }> }> }).allDocs({ include_docs: true }))
      .rows;
    return all.filter((row) => !row.id.startsWith('_design/') && row.doc).map((row) => schedulerDoc(row.doc as ReplicatorDoc));
  };

  const list = (req: Request, res: Response) => {
    jobs().then(
      (docs) => {
        const skip = count(req.query.skip, 0);
        const limit = count(req.query.limit, docs.length);
        sendJson(res, 200, { total_rows: docs.length, offset: skip, docs: docs.slice(skip, skip + limit) });
      },
      (error: unknown) => sendCouchError(res, error),
    );
  };

  router.get('/_scheduler/docs', list);
  router.get(`/_scheduler/docs/${REPLICATOR}`, list);
  router.get(`/_scheduler/docs/${REPLICATOR}/:docid`, (req, res) => {
    const read = async () => {
      const db = await openExistingDb(app, pouch, REPLICATOR);
      return db?.get(req.params.docid).catch(() => undefined);
    };
    read().then(
      (doc) => {
        if (!doc || req.params.docid.startsWith('_design/')) return sendJson(res, 404, { error: 'not_found', reason: 'missing' });
        sendJson(res, 200, schedulerDoc(doc as ReplicatorDoc));
      },
      (error: unknown) => sendCouchError(res, error),
    );
  });
  router.get('/_scheduler/jobs', (_req, res) => {
    jobs().then(
      (docs) => {
        const running = docs
          .filter((d) => d.state === 'running')
          .map((d) => ({
            database: d.database,
            doc_id: d.doc_id,
            id: d.id,
            node: d.node,
            source: d.source,
            target: d.target,
            history: [],
            start_time: d.start_time,
          }));
        sendJson(res, 200, { total_rows: running.length, offset: 0, jobs: running });
      },
      (error: unknown) => sendCouchError(res, error),
    );
  });
  return router;
}
