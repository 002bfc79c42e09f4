/** Small HTTP helpers of the status page: JSON answers that never carry credentials, bodies, static files, CSRF. */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshError, isMeshError } from '../core/errors.js';
import { scrubUrl } from '../core/log.js';

/** The page's files, from the source folder (there is no build step): dist/dashboard → ../../dashboard/page. */
export const PAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dashboard', 'page');

const MAX_BODY = 16 * 1024;
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
/** The header every state-changing request must carry: a cross-site form or image cannot set it, and no CORS is offered. */
export const CSRF_HEADER = 'x-mesh-dashboard';

export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** Serialises a payload for the browser, with any user-info left in a URL scrubbed as a last line of defence. */
export function serialise(body: unknown): string {
  return scrubUrl(JSON.stringify(body));
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = serialise(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, error: unknown): void {
  if (!isMeshError(error)) {
    sendJson(res, 500, { error: 'internal', reason: 'the dashboard failed; see its log' });
    return;
  }
  const status: Record<string, number> = {
    BAD_INPUT: 400,
    NOT_FOUND: 404,
    UNAUTHORIZED: 403,
    FORBIDDEN: 403,
    CONFLICT: 409,
    SERVER_UNREACHABLE: 502,
    SERVER_ERROR: 502,
  };
  sendJson(res, status[error.code] ?? 500, { error: error.code.toLowerCase(), reason: error.message });
}

export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new MeshError('BAD_INPUT', 'send a JSON body (Content-Type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new MeshError('BAD_INPUT', `the request body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new MeshError('BAD_INPUT', 'the request body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new MeshError('BAD_INPUT', 'the request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/** Same-origin check for state-changing requests and WebSocket upgrades: the custom header, and Origin (when sent) equal to Host. */
export function crossSiteReason(req: IncomingMessage, requireHeader: boolean): string | undefined {
  if (requireHeader && req.headers[CSRF_HEADER] !== '1') return `missing the ${CSRF_HEADER} header (requests must come from the page itself)`;
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  try {
    if (new URL(origin).host !== req.headers.host) return `origin ${origin} is not this dashboard`;
  } catch {
    return 'malformed Origin header';
  }
  return undefined;
}

/** Serves a file of the page folder; names are checked so nothing outside it can be read. */
export async function sendStatic(res: ServerResponse, name: string): Promise<boolean> {
  const type = TYPES[extname(name)];
  if (!type || !/^[a-z0-9-]+\.[a-z]+$/.test(name)) return false;
  const path = join(PAGE_DIR, name);
  if (!path.startsWith(PAGE_DIR + sep)) return false;
  let body: Buffer;
  try {
    body = await readFile(path);
  } catch {
    return false;
  }
  res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': body.length });
  res.end(body);
  return true;
}
