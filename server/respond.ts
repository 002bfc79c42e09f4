/** CouchDB-shaped JSON answers: `{"error": ..., "reason": ...}` with the matching status. */
import type { Response } from 'express';

export function sendJson(res: Response, status: number, body: unknown): void {
  res
    .status(status)
    .type('application/json')
    .send(JSON.stringify(body) + '\n');
}

/** A PouchDB error (`status`, `name`, `message`) or a CouchDB one (`error`, `reason`) → its JSON answer. */
export function sendCouchError(res: Response, error: unknown, fallbackStatus = 500): void {
  const e = (error ?? {}) as { status?: unknown; name?: unknown; message?: unknown; error?: unknown; reason?: unknown };
  const status = typeof e.status === 'number' && e.status >= 400 && e.status < 600 ? e.status : fallbackStatus;
  const name =
    typeof e.error === 'string'
      ? e.error
      : typeof e.name === 'string' && e.name !== 'Error' && e.name !== 'TypeError'
        ? e.name
        : status < 500
          ? 'bad_request'
          : 'unknown_error';
  const reason = typeof e.reason === 'string' ? e.reason : typeof e.message === 'string' ? e.message : String(error);
  sendJson(res, status, { error: name, reason });
}
