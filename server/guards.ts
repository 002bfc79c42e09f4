/**
 * What keeps one bad request from taking the embedded server down.
 *
 * Known crashers of stock express-pouchdb 4.2 / pouchdb-replicator 4.2 on Node 20, and where each is handled:
 * - POST `_changes` with a `selector` body: served by changes-gaps.ts, never reaches express-pouchdb.
 * - Invalid selectors: rejected with 400 in changes-gaps.ts, feed errors answered, not thrown.
 * - Bad JSON bodies: parsed in front (`jsonBodyGuard`), answered 400 `bad_request`.
 * - Deleting a `_replicator` document: the replicator's completion handler re-reads the deleted
 *   document without a catch (an unhandled rejection). `rejectionGuard` keeps the process alive
 *   and logs it; the replication itself is cancelled as CouchDB does.
 * - Anything thrown synchronously in a route: `errorHandler` answers 500 JSON.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../core/log.js';
import { errorMessage } from '../core/errors.js';
import { BadRequest, checkBody, checkChangesQuery, checkNesting, checkViewQuery, prepareBulkDocs, prepareNewDocument } from './request-checks.js';
import { sendCouchError, sendJson } from './respond.js';

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'COPY']);

/**
 * Validates a JSON body before express-pouchdb sees it. Its own parsers answer 400 for most routes,
 * but a few (design functions, `_bulk_docs` with a body that is not an object) went on with
 * `undefined` and threw later. Attachments and other non-JSON bodies pass untouched.
 * The parsed body is left on `req.body` with `req._body` set, so body-parser downstream does not re-read it.
 */
/** How a path's body is read: `doc` (one JSON document), `raw` (left to express-pouchdb), or `json` (any other JSON). */
export function bodyKind(method: string, path: string): 'doc' | 'raw' | 'json' {
  const parts = path.split('/').filter(Boolean);
  const system = parts[1] === '_design' || parts[1] === '_local';
  // Attachments and design functions (_update, _show, _list) read the raw body themselves.
  if (parts[1] === '_design' && /^_(update|show|list)$/.test(parts[3] ?? '')) return 'raw';
  if (parts.length > 2 && !parts[1].startsWith('_')) return 'raw';
  // A view queried with POST {keys} reads a JSON body (checked like the other bodies).
  if (method === 'POST' && parts.length === 5 && parts[1] === '_design' && parts[3] === '_view') return 'json';
  if (parts.length > 3 && system) return 'raw';
  if (method === 'POST' && parts.length === 1 && !parts[0].startsWith('_')) return 'doc';
  if (method === 'PUT' && ((parts.length === 2 && !parts[1].startsWith('_')) || (parts.length === 3 && system))) return 'doc';
  return 'json';
}

const NEEDS_OBJECT = /\/(_bulk_docs|_all_docs|_bulk_get|_revs_diff|_find|_index|_purge|_missing_revs|_changes|_security)$/;

/**
 * Validates a JSON body before express-pouchdb sees it. Its parsers let `null`, strings and arrays
 * through to code that then throws, and ignore a document sent without a JSON content type.
 * The parsed body stays on `req.body` (with `req._body` set), so body-parser downstream does not re-read it.
 */
export function jsonBodyGuard(limit: string) {
  const parseAny = express.json({ limit, strict: false, type: () => true });
  return function guard(req: Request, res: Response, next: NextFunction): void {
    if (!BODY_METHODS.has(req.method)) return next();
    const kind = bodyKind(req.method, req.path);
    if (kind === 'raw' || (kind === 'json' && !req.is('application/json'))) return next();
    if (kind === 'doc' && req.is('multipart/related')) return next();
    parseAny(req, res, (error?: unknown) => {
      if (error) {
        const status = (error as { status?: number }).status;
        if (status === 413) return sendJson(res, 413, { error: 'too_large', reason: 'the request entity is too large' });
        return sendJson(res, 400, { error: 'bad_request', reason: 'invalid_json' });
      }
      const body: unknown = req.body;
      const isObject = body !== null && typeof body === 'object' && !Array.isArray(body);
      const hasBody = (req.headers['content-length'] !== '0' && req.headers['content-length'] !== undefined) || req.headers['transfer-encoding'] !== undefined;
      if (kind === 'doc' && !isObject) return sendJson(res, 400, { error: 'bad_request', reason: 'Document must be a JSON object' });
      if (hasBody && NEEDS_OBJECT.test(req.path) && !isObject) {
        return sendJson(res, 400, { error: 'bad_request', reason: 'Request body must be a JSON object' });
      }
      try {
        checkNesting(body);
        if (isObject && /\/_bulk_docs$/.test(req.path)) prepareBulkDocs(body as Record<string, unknown>);
        if (isObject && kind === 'doc' && req.method === 'POST') prepareNewDocument(body as Record<string, unknown>);
        if (isObject) checkBody(req.path, body as Record<string, unknown>);
      } catch (error) {
        if (error instanceof BadRequest) return sendJson(res, 400, { error: error.error, reason: error.reason });
        throw error;
      }
      next();
    });
  };
}

/** Query parameters of `_changes`, views and `_all_docs`, checked as CouchDB does (server/request-checks.ts). */
export function queryGuard(req: Request, res: Response, next: NextFunction): void {
  const parts = req.path.split('/').filter(Boolean);
  const query = req.query as Record<string, unknown>;
  try {
    if (parts.length === 2 && parts[1] === '_changes') checkChangesQuery(query);
    else if (parts.length === 2 && parts[1] === '_all_docs') checkViewQuery(query, true);
    else if (parts.length === 5 && parts[1] === '_design' && parts[3] === '_view') checkViewQuery(query, false);
  } catch (error) {
    if (error instanceof BadRequest) return sendJson(res, 400, { error: error.error, reason: error.reason });
    throw error;
  }
  next();
}

/** The last express middleware: whatever escaped a route becomes a JSON answer, never a crash. */
export function errorHandler(logger: Logger) {
  // express recognises error handlers by their four parameters.
  return function handleError(error: unknown, req: Request, res: Response, _next: NextFunction): void {
    const e = error as { type?: string; status?: number };
    if (e?.type === 'entity.parse.failed') return sendJson(res, 400, { error: 'bad_request', reason: 'invalid_json' });
    if (e?.type === 'entity.too.large') return sendJson(res, 413, { error: 'too_large', reason: 'the request entity is too large' });
    const status = typeof e?.status === 'number' ? e.status : 500;
    if (status >= 500) logger.error({ err: errorMessage(error), method: req.method, path: req.path }, 'request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendCouchError(res, error, 500);
  };
}

/**
 * Keeps the process alive through the unhandled rejections that express-pouchdb's plugins
 * leave behind (see above): logged, not thrown. Installed while a server runs; returns its removal.
 */
export function rejectionGuard(logger: Logger): () => void {
  const onRejection = (reason: unknown) => {
    logger.warn({ err: errorMessage(reason) }, 'unhandled rejection inside express-pouchdb (ignored)');
  };
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('unhandledRejection', onRejection);
  };
}
