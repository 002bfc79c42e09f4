/**
 * CouchDB's words where PouchDB's differ, in the answers express-pouchdb sends: the reason of a
 * conflict (`Document update conflict.`, with CouchDB's full stop, also on `_bulk_docs` rows),
 * `deleted` (not `missing`) as the reason of a 404 for a deleted document, and the welcome of
 * `GET /` (`"couchdb": "Welcome"` beside express-pouchdb's own fields and `uuid`).
 * Installed once on express-pouchdb's `utils.sendJSON` and `utils.sendError`, through which its routes answer.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type SendJson = (res: unknown, status: number, body: unknown) => void;
type SendError = (res: unknown, error: unknown, baseStatus?: number) => void;
const utils = require('express-pouchdb/lib/utils.js') as { sendJSON: SendJson & { couchWording?: true }; sendError: SendError };

const REASONS: Record<string, string> = { 'Document update conflict': 'Document update conflict.' };

/** A conflict row or answer (`{error: "conflict", reason}`, never a stored document: those have `_id`). */
function reworded(row: unknown): unknown {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) return row;
  const r = row as { error?: unknown; reason?: unknown; _id?: unknown };
  if (r.error === 'conflict' && r._id === undefined && typeof r.reason === 'string' && REASONS[r.reason] !== undefined)
    return { ...r, reason: REASONS[r.reason] };
  return row;
}

/** The body as CouchDB words it: errors (409) and `_bulk_docs` rows (201) reworded, the welcome completed. */
export function couchWording(status: number, body: unknown): unknown {
  if (status === 201 && Array.isArray(body)) return body.map(reworded);
  if (status === 409) return reworded(body);
  if (status === 200 && body !== null && typeof body === 'object' && (body as Record<string, unknown>)['express-pouchdb'] === 'Welcome!')
    return { couchdb: 'Welcome', ...(body as object) };
  return body;
}

export function installCouchWording(): void {
  if (utils.sendJSON.couchWording) return;
  const original = utils.sendJSON;
  const wrapped: SendJson & { couchWording?: true } = (res, status, body) => original(res, status, couchWording(status, body));
  wrapped.couchWording = true;
  utils.sendJSON = wrapped;
  const sendError = utils.sendError;
  utils.sendError = (res, error, baseStatus) => {
    // PouchDB keeps "deleted" in `reason` and "missing" in `message`, which express-pouchdb sends.
    const e = error as { status?: unknown; name?: unknown; message?: unknown; reason?: unknown } | null;
    if (e && e.status === 404 && e.name === 'not_found' && e.reason === 'deleted')
      return sendError(res, { status: 404, name: 'not_found', message: 'deleted' }, 404);
    return sendError(res, error, baseStatus);
  };
}
