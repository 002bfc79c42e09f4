/**
 * One HTTP request to a CouchDB-compatible server, with the checks a client of an untrusted
 * server needs: a bound on the time (headers and body), a bound on the size of the answer, and
 * an answer that must be a JSON object. Anything else ends as a MeshError that says what came
 * back, never as an unhandled rejection, a hang or a string handed on as if it were a document.
 */
import { linkSignals } from '../core/abort.js';
import { MeshError, errorMessage } from '../core/errors.js';

export interface CouchRequest {
  method?: string;
  /** A path under the database, sent as is (`_design/mesh/_view/ready`, `_changes`). */
  path?: string;
  /** A document id, encoded (a `_design/` or `_local/` prefix is kept). */
  doc?: string;
  qs?: Record<string, unknown>;
  body?: unknown;
  signal?: AbortSignal;
  /** Called with the answer's headers once they are in (e.g. `Date`, for a clock check), whatever the status. */
  onHeaders?: (headers: Headers) => void;
}

export interface CouchTransport {
  /** Server URL without credentials and without a trailing slash. */
  url: string;
  /** `''` for the server itself. */
  database: string;
  /** E.g. `Authorization`; never logged. */
  headers: Record<string, string>;
  timeoutMs: number;
  maxBytes: number;
}

/** View query parameters CouchDB wants as JSON. */
const JSON_PARAMS = new Set(['startkey', 'endkey', 'key', 'keys', 'start_key', 'end_key']);

/** Encodes a document id for a URL; only the `_design/` and `_local/` prefixes keep their slash. */
export function documentPath(id: string): string {
  const prefix = /^(_design|_local)\//.exec(id)?.[0] ?? '';
  return prefix + encodeURIComponent(id.slice(prefix.length));
}

export function requestUrl(transport: CouchTransport, request: CouchRequest): string {
  let url = transport.url;
  if (transport.database) url += `/${encodeURIComponent(transport.database)}`;
  if (request.path) url += `/${request.path}`;
  else if (request.doc !== undefined) url += `/${documentPath(request.doc)}`;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(request.qs ?? {})) {
    if (value === undefined) continue;
    params.set(key, JSON_PARAMS.has(key) ? JSON.stringify(value) : String(value));
  }
  const query = params.toString();
  return query ? `${url}?${query}` : url;
}

/** A short, printable excerpt of an answer for a message (no control characters, no megabytes). */
export function excerpt(text: string, length = 120): string {
  // An HTML error page (a proxy's) reads better without its tags.
  const flat = text
    .replace(/<[^>]{0,200}>/g, ' ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f\s]+/g, ' ')
    .trim();
  return flat.length > length ? `${flat.slice(0, length)}…` : flat;
}

/**
 * Reads the body as text, refusing to hold more than `maxBytes`. `signal` cancels the read
 * itself: once the headers are in, fetch may no longer hear its own signal (Node 20's fetch
 * follows it through a weak reference that a collection can clear), and a longpoll whose abort
 * is lost holds the process for the rest of its timeout.
 */
async function readBody(response: Response, maxBytes: number, what: string, signal: AbortSignal): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new MeshError('BAD_RESPONSE', `${what}: the server announced an answer of ${declared} bytes, more than the ${maxBytes} accepted`);
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const cancel = (): void => void reader.cancel(signal.reason).catch(() => undefined);
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await readChunks(reader, maxBytes, what, signal);
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

async function readChunks(reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes: number, what: string, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Bounded by maxBytes and by the signal's deadline.
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const { done, value } = await reader.read();
    if (signal.aborted) throw signal.reason;
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new MeshError('BAD_RESPONSE', `${what}: the server's answer is larger than the ${maxBytes} bytes accepted`);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * fetch, ended by `signal` even when fetch no longer hears it (see readBody): an answer that
 * arrives after the abort has its body cancelled, so its connection closes.
 */
function fetchUntilAborted(url: string, init: RequestInit, signal: AbortSignal): Promise<Response> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const pending = fetch(url, { ...init, signal });
  // Whatever happens below, a rejection of `pending` is handled: an unhandled one ends the process.
  pending.catch(() => undefined);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason);
      pending.then(
        (late) => late.body?.cancel().catch(() => undefined),
        () => undefined,
      );
    };
    signal.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (response) => {
        signal.removeEventListener('abort', onAbort);
        resolve(response);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

const STATUS_CODES: Record<number, 'CONFLICT' | 'NOT_FOUND' | 'UNAUTHORIZED' | 'FORBIDDEN'> = {
  409: 'CONFLICT',
  404: 'NOT_FOUND',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
};

/**
 * Sends one request and returns the parsed JSON answer. Errors: SERVER_UNREACHABLE (no
 * connection, reset, no complete answer in time), SERVER_ERROR (5xx), BAD_RESPONSE (a 2xx
 * answer that is not a JSON object or array, or too large), ABORTED (the caller's signal),
 * and CONFLICT / NOT_FOUND / UNAUTHORIZED / FORBIDDEN / BAD_INPUT for the other statuses, with
 * CouchDB's `error` and `reason` kept.
 */
export async function couchRequest<T>(transport: CouchTransport, request: CouchRequest, what: string): Promise<T> {
  // Combined by hand (core/abort.ts): an AbortSignal.any signal could be collected mid-request.
  const link = linkSignals([request.signal], { timeoutMs: transport.timeoutMs });
  const method = (request.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = { accept: 'application/json', ...transport.headers };
  let body: string | undefined;
  if (request.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(request.body);
  }
  const failed = (cause: unknown): MeshError => {
    if (request.signal?.aborted) return new MeshError('ABORTED', `${what}: aborted`, { cause });
    if (link.timedOut) return new MeshError('SERVER_UNREACHABLE', `${what}: no complete answer within ${transport.timeoutMs / 1000} s`, { cause });
    if (cause instanceof MeshError) return cause;
    const reason = (cause as { cause?: unknown })?.cause ?? cause;
    return new MeshError('SERVER_UNREACHABLE', `${what}: server unreachable (${errorMessage(reason)})`, { cause });
  };
  let status: number;
  let contentType: string;
  let text: string;
  try {
    const response = await fetchUntilAborted(requestUrl(transport, request), { method, headers, body, redirect: 'error' }, link.signal);
    status = response.status;
    contentType = response.headers.get('content-type') ?? '(none)';
    request.onHeaders?.(response.headers);
    text = await readBody(response, transport.maxBytes, what, link.signal);
  } catch (error) {
    throw failed(error);
  } finally {
    link.release();
  }
  let parsed: unknown;
  let parseError: string | undefined;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch (error) {
    parseError = errorMessage(error);
  }
  const isJson = parsed !== null && typeof parsed === 'object';
  if (status >= 200 && status < 300) {
    if (isJson) return parsed as T;
    const why = parseError ? `invalid JSON (${parseError})` : `not a JSON object`;
    throw new MeshError('BAD_RESPONSE', `${what}: the server answered ${status} with ${contentType}, ${why}: "${excerpt(text)}"`);
  }
  const couch = isJson ? (parsed as { error?: unknown; reason?: unknown }) : {};
  const error = typeof couch.error === 'string' ? couch.error : '';
  const reason = typeof couch.reason === 'string' ? couch.reason : excerpt(text) || 'no reason given';
  const code = STATUS_CODES[status] ?? (status >= 500 ? 'SERVER_ERROR' : 'BAD_INPUT');
  throw new MeshError(code, `${what}: ${status} ${error} ${excerpt(reason, 300)}`.replace(/\s+/g, ' ').trim(), { statusCode: status, reason });
}
