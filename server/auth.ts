/**
 * Authentication in front of express-pouchdb, as CouchDB 3 does it: the server admin (from the
 * site's credentials, roles `["_admin"]`) and the `_users` accounts, by HTTP Basic or by an
 * `AuthSession` cookie from `POST /_session`; CouchDB's login lockout on every password check.
 *
 * express-pouchdb's own authentication is switched off (it could hang an anonymous request).
 * The Authorization header is removed once read, so nothing downstream (design functions,
 * logs) ever sees it. Who may do what with the authenticated user is access.ts's business.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Credentials } from '../config/credentials.js';
import { LOCKED_REASON, type LoginLockout } from './lockout.js';
import { verifyPassword } from './passwords.js';
import type { CouchSessionRequest, SessionUser } from './pouch.js';
import { sendJson } from './respond.js';

export const COOKIE_NAME = 'AuthSession';
/** CouchDB's `[chttpd_auth] timeout`. */
export const DEFAULT_SESSION_TIMEOUT_S = 600;
/** CouchDB's reason for a refused login (a message, not a secret). */
export const LOGIN_REFUSED_REASON = 'Name or password is incorrect.';

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

/** Reads an account document of `_users` (undefined when there is none). */
export type AccountLookup = (name: string) => Promise<Record<string, unknown> | undefined>;

export interface AuthenticatorOptions {
  /** The server admin; without one, anonymous requests are the admin party (loopback only). */
  admin?: Credentials;
  accounts: AccountLookup;
  lockout: LoginLockout;
  sessionTimeoutS?: number;
}

type Verdict = { user: SessionUser } | { refused: 401 | 403; reason: string };

/** Whose request this is, from a password or a cookie, with CouchDB's answers when it is nobody's. */
export class Authenticator {
  /** Signs session cookies; a restart ends every session, as a changed CouchDB secret does. */
  private readonly secret = randomBytes(32);
  private readonly timeoutS: number;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.timeoutS = opts.sessionTimeoutS ?? DEFAULT_SESSION_TIMEOUT_S;
  }

  /** The admin's "salt" in cookies: changing its password ends its sessions. */
  private adminSalt(): string {
    return createHash('sha256')
      .update(this.opts.admin?.password ?? '')
      .digest('hex');
  }

  /** One password check; every failure counts towards the lockout of (name, peer). */
  async verify(name: string, password: string, peer: string): Promise<Verdict> {
    if (this.opts.lockout.isLocked(name, peer)) return { refused: 403, reason: LOCKED_REASON };
    const admin = this.opts.admin;
    if (admin && sameSecret(name, admin.user)) {
      if (sameSecret(password, admin.password)) return { user: { name, roles: ['_admin'], salt: this.adminSalt() } };
    } else {
      const doc = await this.opts.accounts(name);
      if (doc && (await verifyPassword(name, password, doc))) return { user: { name, roles: rolesOf(doc), salt: String(doc.salt) } };
    }
    this.opts.lockout.recordFailure(name, peer);
    return { refused: 401, reason: LOGIN_REFUSED_REASON };
  }

  cookieFor(user: SessionUser, now = Date.now()): string {
    const value = `${user.name}:${Math.floor(now / 1000)
      .toString(16)
      .toUpperCase()}`;
    const mac = createHmac('sha256', this.secret).update(`${value}:${user.salt}`).digest('hex');
    return `${COOKIE_NAME}=${Buffer.from(`${value}:${mac}`).toString('base64url')}; Version=1; Path=/; HttpOnly; Max-Age=${this.timeoutS}`;
  }

  /** The user an `AuthSession` cookie names, when its signature holds and it has not timed out. */
  async fromCookie(cookieHeader: string | undefined, now = Date.now()): Promise<{ user: SessionUser; issuedS: number } | undefined> {
    const raw = cookieValue(cookieHeader, COOKIE_NAME);
    if (!raw) return undefined;
    const decoded = Buffer.from(raw, 'base64url').toString('utf8');
    const macAt = decoded.lastIndexOf(':');
    const timeAt = decoded.lastIndexOf(':', macAt - 1);
    if (timeAt <= 0) return undefined;
    const name = decoded.slice(0, timeAt);
    const issuedS = Number.parseInt(decoded.slice(timeAt + 1, macAt), 16);
    if (!Number.isFinite(issuedS) || now / 1000 - issuedS > this.timeoutS) return undefined;
    const user = await this.account(name);
    if (!user) return undefined;
    const expected = createHmac('sha256', this.secret)
      .update(`${decoded.slice(0, macAt)}:${user.salt}`)
      .digest();
    const given = Buffer.from(decoded.slice(macAt + 1), 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return { user, issuedS };
  }

  /** The current roles and salt of a name (a cookie is only as good as the account behind it). */
  private async account(name: string): Promise<SessionUser | undefined> {
    if (this.opts.admin && sameSecret(name, this.opts.admin.user)) return { name, roles: ['_admin'], salt: this.adminSalt() };
    const doc = await this.opts.accounts(name);
    return doc && typeof doc.salt === 'string' ? { name, roles: rolesOf(doc), salt: doc.salt } : undefined;
  }

  /** Middleware: sets `req.couchSession` (anonymous when no credential is given), or answers 401/403. */
  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const header = req.headers.authorization;
      delete req.headers.authorization;
      this.identify(req, res, header).then((session) => {
        if (!session) return;
        (req as CouchSessionRequest).couchSession = session;
        next();
      }, next);
    };
  }

  private async identify(req: Request, res: Response, header: string | undefined): Promise<CouchSessionRequest['couchSession'] | undefined> {
    if (header !== undefined) {
      const given = parseBasicAuth(header);
      const verdict = given ? await this.verify(given.user, given.password, peerOf(req)) : ({ refused: 401, reason: LOGIN_REFUSED_REASON } as const);
      if ('refused' in verdict) {
        refuse(req, res, verdict.refused, verdict.reason);
        return undefined;
      }
      return session(verdict.user, 'default');
    }
    const fromCookie = await this.fromCookie(req.headers.cookie);
    if (fromCookie) {
      // As CouchDB: a cookie older than a tenth of the timeout is renewed on the answer.
      if (Date.now() / 1000 - fromCookie.issuedS > this.timeoutS / 10) res.setHeader('Set-Cookie', this.cookieFor(fromCookie.user));
      return session(fromCookie.user, 'cookie');
    }
    if (!this.opts.admin)
      return { ok: true, userCtx: { name: null, roles: ['_admin'] }, info: { authenticated: 'admin_party', authentication_handlers: HANDLERS } };
    return { ok: true, userCtx: { name: null, roles: [] }, info: { authentication_handlers: HANDLERS } };
  }

  /** `GET`, `POST` and `DELETE /_session`, as CouchDB answers them. */
  sessionRoutes(): Router {
    const router = express.Router();
    const body = [express.json({ limit: '16kb' }), express.urlencoded({ extended: false, limit: '16kb' })];
    router.get('/_session', (req, res) => sendJson(res, 200, (req as CouchSessionRequest).couchSession));
    router.post('/_session', ...body, (req, res, next) => {
      const { name, password } = (req.body ?? {}) as { name?: unknown; password?: unknown };
      if (typeof name !== 'string' || typeof password !== 'string') return refuse(req, res, 401, LOGIN_REFUSED_REASON);
      this.verify(name, password, peerOf(req)).then((verdict) => {
        if ('refused' in verdict) return refuse(req, res, verdict.refused, verdict.reason);
        res.setHeader('Set-Cookie', this.cookieFor(verdict.user));
        sendJson(res, 200, { ok: true, name: verdict.user.name, roles: verdict.user.roles });
      }, next);
    });
    router.delete('/_session', (_req, res) => {
      res.setHeader('Set-Cookie', `${COOKIE_NAME}=; Version=1; Path=/; HttpOnly; Max-Age=0`);
      sendJson(res, 200, { ok: true });
    });
    return router;
  }
}

const HANDLERS = ['cookie', 'default'];

function session(user: SessionUser, how: 'default' | 'cookie'): NonNullable<CouchSessionRequest['couchSession']> {
  return {
    ok: true,
    userCtx: { name: user.name, roles: [...user.roles] },
    info: { authenticated: how, authentication_db: '_users', authentication_handlers: HANDLERS },
  };
}

function rolesOf(doc: Record<string, unknown>): string[] {
  return Array.isArray(doc.roles) ? doc.roles.filter((r): r is string => typeof r === 'string') : [];
}

/** The address a login comes from: what the lockout counts by. */
export function peerOf(req: Request): string {
  return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

/** A 401 or 403 in CouchDB's words; a refused request's body is never read, so its connection is closed. */
export function refuse(req: Request, res: Response, status: 401 | 403, reason: string): void {
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close');
  sendJson(res, status, { error: status === 401 ? 'unauthorized' : 'forbidden', reason });
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
