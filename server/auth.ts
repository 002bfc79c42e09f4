/**
 * Authentication in front of express-pouchdb: one server admin, HTTP Basic only.
 *
 * express-pouchdb's own authentication (a `_users` database, cookie sessions, admins hashed into
 * config.json) is switched off; it could hang an anonymous request instead of answering 401.
 * Here every request is checked against the admin's credentials in constant time and, once
 * accepted, handed to express-pouchdb as a server-admin session with the Authorization header removed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import type { Credentials } from '../config/credentials.js';
import type { CouchSessionRequest } from './pouch.js';

/** Requests answered without credentials: the health check and the welcome document. */
function isOpenRoute(req: Request): boolean {
  return req.method === 'GET' && (req.path === '/_up' || req.path === '/');
}

interface BasicCredentials {
  user: string;
  password: string;
}

/** `Authorization: Basic base64(user:password)` → credentials, or undefined when absent or malformed. */
export function parseBasicAuth(header: string | undefined): BasicCredentials | undefined {
  if (!header) return undefined;
  const match = /^\s*basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Compares digests, so neither the length nor the content of the secret leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

export function credentialsMatch(given: BasicCredentials | undefined, admin: Credentials): boolean {
  if (!given) return false;
  // Evaluate both comparisons whatever the first one says.
  const userOk = sameSecret(given.user, admin.user);
  const passwordOk = sameSecret(given.password, admin.password);
  return userOk && passwordOk;
}

function unauthorized(req: Request, res: Response, reason: string): void {
  // The body of a refused request is never read; close the connection rather than reuse it.
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) {
    res.setHeader('Connection', 'close');
  }
  res.status(401).type('application/json').send(JSON.stringify({ error: 'unauthorized', reason }) + '\n');
}

/**
 * Middleware: with an admin, refuse anything but the open routes unless Basic credentials match;
 * without one (loopback only), everyone is admin, as in CouchDB's "admin party".
 */
export function authenticate(admin: Credentials | undefined) {
  return function authMiddleware(req: Request, res: Response, next: NextFunction): void {
    const header = req.headers.authorization;
    // Nothing downstream (express-pouchdb's design functions, its log) ever sees the credential.
    delete req.headers.authorization;
    let name: string | null = null;
    if (admin) {
      const given = parseBasicAuth(header);
      if (!credentialsMatch(given, admin)) {
        if (isOpenRoute(req)) return next();
        unauthorized(req, res, header ? 'Name or password is incorrect.' : 'Authentication required.');
        return;
      }
      name = admin.user;
    }
    (req as CouchSessionRequest).couchSession = {
      ok: true,
      userCtx: { name, roles: ['_admin'] },
      info: { authenticated: admin ? 'default' : 'admin_party', authentication_handlers: ['default'] },
    };
    next();
  };
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost') return true;
  const family = isIP(bare);
  if (family === 4) return bare.startsWith('127.');
  if (family === 6) return bare === '::1' || /^::ffff:127\./.test(bare);
  return false;
}
