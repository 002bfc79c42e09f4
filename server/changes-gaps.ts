/**
 * The `_changes` feeds and `/_up`, served in front of express-pouchdb where it falls short on Node 20:
 * - a POST body `selector` is copied into the options as `filter=_selector` (stock: process crash);
 * - `feed=longpoll` honours `timeout` (answers an empty result) and filters (stock: waits forever);
 * - `feed=continuous` delivers filtered changes from `db.changes({live:true})` and stops on the
 *   response's `close` (stock: never delivers with a filter; on Node 20 a POST request emits
 *   `close` as soon as its body is read, so the request's event cannot be used).
 * A plain (`normal`) feed is answered here as well, so all of `_changes` behaves one way.
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../core/log.js';
import { errorMessage } from '../core/errors.js';
import { openExistingDb, type ChangeRow, type ChangesFeed, type ExpressPouchApp, type PouchDatabase, type PouchStatic } from './pouch.js';
import { sendCouchError, sendJson } from './respond.js';

/** CouchDB's default for `timeout` on longpoll and continuous feeds. */
const DEFAULT_TIMEOUT_MS = 60_000;

/** Query options passed on to PouchDB; anything else (feed, heartbeat, timeout…) is handled here. */
const PASSED_OPTIONS = ['since', 'limit', 'include_docs', 'conflicts', 'descending', 'style', 'filter', 'doc_ids', 'view', 'attachments', 'att_encoding_info'];

/** express-pouchdb's query normalisation: each value that parses as JSON is used parsed. */
function parseQueryValue(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

export class BadChangesRequest extends Error {}

/**
 * Rejects what PouchDB would only discover while filtering, where a throwing filter escapes as an
 * unhandled error (a `$regex` that does not compile), and a selector nested absurdly deep.
 */
export function checkSelector(selector: unknown, depth = 0): void {
  if (depth > 64) throw new BadChangesRequest('Selector error: nested too deeply');
  if (Array.isArray(selector)) {
    for (const item of selector) checkSelector(item, depth + 1);
    return;
  }
  if (selector === null || typeof selector !== 'object') return;
  for (const [key, value] of Object.entries(selector as Record<string, unknown>)) {
    if (key === '$regex') {
      if (typeof value !== 'string') throw new BadChangesRequest('Selector error: $regex expects a string');
      try {
        new RegExp(value);
      } catch (error) {
        throw new BadChangesRequest(`Selector error: invalid regular expression ${JSON.stringify(value)} (${errorMessage(error)})`);
      }
    } else {
      checkSelector(value, depth + 1);
    }
  }
}

export interface ChangesRequest {
  feed: 'normal' | 'longpoll' | 'continuous';
  timeoutMs: number;
  heartbeatMs?: number;
  options: Record<string, unknown>;
}

/** Builds PouchDB changes options from the query and a POST body (`selector`, `doc_ids`). */
export function readChangesRequest(query: Record<string, unknown>, body: unknown): ChangesRequest {
  const q: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(query)) q[key] = parseQueryValue(value);
  const options: Record<string, unknown> = {};
  for (const key of PASSED_OPTIONS) if (q[key] !== undefined) options[key] = q[key];
  // Filter functions (`ddoc/name`) read the query through `req.query`.
  options.query_params = { ...q };
  if (body !== undefined && body !== null && typeof body === 'object' && !Array.isArray(body)) {
    const b = body as Record<string, unknown>;
    if (b.selector !== undefined) {
      options.selector = b.selector;
      options.filter = '_selector';
    }
    if (b.doc_ids !== undefined) {
      options.doc_ids = b.doc_ids;
      if (options.filter === undefined) options.filter = '_doc_ids';
    }
  }
  if (options.filter === '_selector') {
    const selector = options.selector;
    if (selector === undefined) throw new BadChangesRequest('Selector must be specified in POST payload');
    if (selector === null || typeof selector !== 'object' || Array.isArray(selector)) throw new BadChangesRequest('Selector error: expected a JSON object');
    checkSelector(selector);
  }
  if (options.filter === '_doc_ids' && !Array.isArray(options.doc_ids)) {
    throw new BadChangesRequest('`doc_ids` filter parameter is not a list of doc ids.');
  }
  if (typeof options.limit === 'number' && options.limit < 1) options.limit = 1;
  const feed = q.feed === 'longpoll' || q.feed === 'continuous' ? q.feed : 'normal';
  const timeoutMs = typeof q.timeout === 'number' && q.timeout >= 0 ? q.timeout : DEFAULT_TIMEOUT_MS;
  let heartbeatMs: number | undefined;
  if (q.heartbeat === true) heartbeatMs = DEFAULT_TIMEOUT_MS;
  else if (typeof q.heartbeat === 'number' && q.heartbeat > 0) heartbeatMs = q.heartbeat;
  return { feed, timeoutMs, heartbeatMs, options };
}

/** Parses (never runs) a design function's source, as PouchDB would compile it. */
function compiles(source: unknown): boolean {
  if (typeof source !== 'string') return false;
  try {
    new Function(`return (${source});`);
    return true;
  } catch {
    return false;
  }
}

/**
 * A `ddoc/name` filter (or `_view` with `view=ddoc/name`) whose function is missing or does not
 * compile leaves PouchDB's changes feed pending forever (the error escapes as an unhandled
 * rejection), so both are checked before the feed starts.
 */
export async function checkDesignFilter(db: PouchDatabase, options: Record<string, unknown>): Promise<void> {
  const filter = options.filter;
  if (typeof filter !== 'string' || (filter.startsWith('_') && filter !== '_view')) return;
  const target = filter === '_view' ? options.view : filter;
  const [ddocName, funcName, extra] = typeof target === 'string' ? target.split('/') : [];
  if (!ddocName || !funcName || extra !== undefined)
    throw new BadChangesRequest(`${filter === '_view' ? 'view' : 'filter'} must be of the form designname/functionname`);
  const ddoc = await db.get(`_design/${ddocName}`);
  const section = ddoc[filter === '_view' ? 'views' : 'filters'] as Record<string, unknown> | undefined;
  const fn = filter === '_view' ? (section?.[funcName] as { map?: unknown } | undefined)?.map : section?.[funcName];
  if (fn === undefined) throw Object.assign(new Error(`missing json key: ${funcName}`), { status: 404, name: 'not_found' });
  if (!compiles(fn))
    throw new BadChangesRequest(`compilation_error: ${filter === '_view' ? 'map' : 'filter'} function _design/${ddocName}/${funcName} does not compile`);
}

function beginStream(res: Response): void {
  res.status(200);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Cache-Control', 'must-revalidate');
  res.flushHeaders();
}

/** Every timer and feed of one streamed response, released exactly once when it ends or the client goes. */
class StreamScope {
  private feed?: ChangesFeed;
  private timers: NodeJS.Timeout[] = [];
  done = false;

  constructor(private readonly res: Response) {
    res.on('close', () => this.release());
  }

  track(feed: ChangesFeed): ChangesFeed {
    this.feed = feed;
    return feed;
  }

  every(ms: number, fn: () => void): void {
    this.timers.push(setInterval(fn, ms));
  }

  after(ms: number, fn: () => void): void {
    this.timers.push(setTimeout(fn, ms));
  }

  end(text?: string): void {
    if (this.done) return;
    this.release();
    if (!this.res.writableEnded) this.res.end(text);
  }

  release(): void {
    this.done = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    const feed = this.feed;
    this.feed = undefined;
    if (feed) {
      try {
        feed.cancel();
      } catch {
        // already cancelled
      }
    }
  }
}

async function serveLongpoll(db: PouchDatabase, request: ChangesRequest, res: Response, logger: Logger): Promise<void> {
  const first = await db.changes({ ...request.options, live: false });
  if (first.results.length > 0 || request.timeoutMs === 0) {
    sendJson(res, 200, first);
    return;
  }
  beginStream(res);
  const scope = new StreamScope(res);
  const pending: ChangeRow[] = [];
  const limit = typeof request.options.limit === 'number' ? request.options.limit : Infinity;
  const finish = (lastSeq: number | string) => scope.end(JSON.stringify({ results: pending, last_seq: lastSeq }) + '\n');
  const feed = scope.track(db.changes({ ...request.options, since: first.last_seq, live: true, return_docs: false }));
  feed.on('change', (change) => {
    if (scope.done) return;
    pending.push(change);
    // Gather what arrived in the same turn (one bulk write), then answer.
    if (pending.length >= limit) finish(change.seq);
    else if (pending.length === 1) setImmediate(() => finish(pending[pending.length - 1].seq));
  });
  feed.on('error', (error) => {
    logger.warn({ err: errorMessage(error) }, 'longpoll changes feed failed');
    finish(first.last_seq);
  });
  scope.after(request.timeoutMs, () => finish(first.last_seq));
  if (request.heartbeatMs) scope.every(request.heartbeatMs, () => res.write('\n'));
}

function serveContinuous(db: PouchDatabase, request: ChangesRequest, res: Response, logger: Logger): void {
  beginStream(res);
  const scope = new StreamScope(res);
  let lastSeq: number | string = request.options.since === undefined ? 0 : (request.options.since as number | string);
  const limit = typeof request.options.limit === 'number' ? request.options.limit : Infinity;
  let sent = 0;
  const feed = scope.track(db.changes({ ...request.options, live: true, return_docs: false }));
  feed.on('change', (change) => {
    if (scope.done) return;
    lastSeq = change.seq;
    res.write(JSON.stringify(change) + '\n');
    sent += 1;
    if (sent >= limit) scope.end(JSON.stringify({ last_seq: lastSeq }) + '\n');
  });
  feed.on('error', (error) => {
    logger.warn({ err: errorMessage(error) }, 'continuous changes feed failed');
    scope.end(JSON.stringify({ error: 'unknown_error', reason: errorMessage(error) }) + '\n');
  });
  if (request.heartbeatMs) scope.every(request.heartbeatMs, () => res.write('\n'));
  // CouchDB ends a continuous feed after `timeout` unless heartbeats keep it open.
  else scope.after(request.timeoutMs, () => scope.end(JSON.stringify({ last_seq: lastSeq }) + '\n'));
}

export function changesRouter(app: ExpressPouchApp, pouch: PouchStatic, logger: Logger): Router {
  const router = express.Router({ caseSensitive: true });
  const jsonBody = express.json({ limit: '64mb', type: () => true });

  const handle = async (req: Request, res: Response) => {
    let request: ChangesRequest;
    try {
      request = readChangesRequest(req.query as Record<string, unknown>, req.method === 'POST' ? req.body : undefined);
    } catch (error) {
      if (error instanceof BadChangesRequest) return sendJson(res, 400, { error: 'bad_request', reason: error.message });
      throw error;
    }
    const db = await openExistingDb(app, pouch, req.params.db);
    if (!db) return sendJson(res, 404, { error: 'not_found', reason: 'Database does not exist.' });
    try {
      await checkDesignFilter(db, request.options);
    } catch (error) {
      if (error instanceof BadChangesRequest) return sendJson(res, 400, { error: 'bad_request', reason: error.message });
      throw error;
    }
    if (request.feed === 'longpoll') return serveLongpoll(db, request, res, logger);
    if (request.feed === 'continuous') return serveContinuous(db, request, res, logger);
    sendJson(res, 200, await db.changes({ ...request.options, live: false }));
  };

  const wrap = (req: Request, res: Response, next: NextFunction) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        logger.warn({ err: errorMessage(error) }, 'changes request failed after the answer began');
        if (!res.writableEnded) res.end();
        return;
      }
      if (error !== null && typeof error === 'object' && 'status' in error) return sendCouchError(res, error);
      next(error);
    });
  };

  router.get('/:db/_changes', wrap);
  router.post('/:db/_changes', jsonBody, wrap);
  return router;
}

/** `GET /_up` as in CouchDB 3. */
export function upRoute(_req: Request, res: Response): void {
  sendJson(res, 200, { status: 'ok' });
}
