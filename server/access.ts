/**
 * Authorisation in front of express-pouchdb, as CouchDB 3's chttpd_auth_request and couch_db
 * decide it, with the answers' exact bodies:
 * - server routes (`/_all_dbs`, `/_config`, `/_scheduler/…`, creating or deleting a database)
 *   are for server admins: 401 "You are not a server admin.";
 * - a database admits its `_security` admins and members (by name or role); one whose members
 *   are empty admits admins only (CouchDB 3's `default_security = admin_only`). Anyone else gets
 *   401 "You are not authorized to access this db." (anonymous) or 403 "You are not allowed to
 *   access this db." (a named user);
 * - `_security`, design documents, `_compact` and `_view_cleanup` are for database admins;
 * - in `_users`, a user reads and writes its own account only and may not change its roles.
 * Design documents written through `_bulk_docs` are refused by validation.ts.
 */
import type { NextFunction, Request, Response } from 'express';
import { isDeepStrictEqual } from 'node:util';
import { refuse } from './auth.js';
import { type CouchSessionRequest, type ExpressPouchApp, type PouchDatabase, type PouchStatic, openExistingDb } from './pouch.js';
import { sendJson } from './respond.js';
import { USERS_DB, USER_PREFIX, accountName } from './users.js';

interface Section {
  names: string[];
  roles: string[];
}
export interface SecurityObject {
  admins: Section;
  members: Section;
}

interface User {
  name: string | null;
  roles: readonly string[];
}

type Refusal = { status: 400 | 401 | 403 | 404; error?: string; reason: string };

const NOT_SERVER_ADMIN: Refusal = { status: 401, reason: 'You are not a server admin.' };

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function section(value: unknown): Section {
  const v = (value ?? {}) as { names?: unknown; roles?: unknown };
  return { names: strings(v.names), roles: strings(v.roles) };
}

/** A stored `_security` object with its gaps filled (`readers` is CouchDB's old name for members). */
export function normalSecurity(raw: unknown): SecurityObject {
  const sec = (raw ?? {}) as { admins?: unknown; members?: unknown; readers?: unknown };
  return { admins: section(sec.admins), members: section(sec.members ?? sec.readers) };
}

function listed(user: User, s: Section): boolean {
  return (user.name !== null && s.names.includes(user.name)) || s.roles.some((r) => user.roles.includes(r));
}

export function isDbAdmin(user: User, sec: SecurityObject): boolean {
  return user.roles.includes('_admin') || listed(user, sec.admins);
}

export function isDbMember(user: User, sec: SecurityObject): boolean {
  return isDbAdmin(user, sec) || listed(user, sec.members);
}

/** CouchDB's throw_security_error: unauthorized for nobody, forbidden for a named user. */
function securityError(user: User, reason?: string): Refusal {
  if (user.name === null) return { status: 401, reason: reason ?? 'You are not authorized to access this db.' };
  return { status: 403, reason: reason ?? 'You are not allowed to access this db.' };
}

async function securityOf(db: PouchDatabase): Promise<SecurityObject> {
  const doc = await db.get('_local/_security').catch(() => undefined);
  return normalSecurity(doc?.security);
}

function pathParts(path: string): string[] | undefined {
  try {
    return path
      .split('/')
      .filter(Boolean)
      .map((p) => decodeURIComponent(p));
  } catch {
    return undefined;
  }
}

const READS = new Set(['GET', 'HEAD']);

function usersAccess(user: User, method: string, parts: string[]): Refusal | undefined {
  if (parts.length === 1 && (method === 'PUT' || method === 'DELETE')) return NOT_SERVER_ADMIN;
  if (parts[1] === '_all_docs' || parts[1] === '_changes') return NOT_SERVER_ADMIN;
  if (user.name === null) return securityError(user);
  const own = parts.length === 2 && parts[1].startsWith(USER_PREFIX);
  if (own && accountName(parts[1]) !== user.name) return { status: 404, error: 'not_found', reason: 'missing' };
  if (own && (READS.has(method) || method === 'PUT' || method === 'DELETE')) return undefined;
  return securityError(user);
}

async function decide(app: ExpressPouchApp, pouch: PouchStatic, req: Request): Promise<Refusal | undefined> {
  const user = (req as CouchSessionRequest).couchSession?.userCtx ?? { name: null, roles: [] };
  const parts = pathParts(req.path);
  if (!parts) return { status: 400, error: 'bad_request', reason: 'invalid path' };
  if (parts.length === 0 || user.roles.includes('_admin')) return undefined;
  const [first, second] = parts;
  if (first === '_up' || first === '_session' || first === '_uuids' || first === 'favicon.ico') return undefined;
  if (first === USERS_DB) return usersAccess(user, req.method, parts);
  if (parts.length === 1 && (req.method === 'PUT' || req.method === 'DELETE')) return NOT_SERVER_ADMIN;
  if (first === '_replicator' && (second === '_all_docs' || second === '_changes')) return NOT_SERVER_ADMIN;
  if (first.startsWith('_') && first !== '_replicator') return NOT_SERVER_ADMIN;
  const db = await openExistingDb(app, pouch, first);
  if (!db) return undefined; // express-pouchdb answers 404 for a database that does not exist
  const sec = await securityOf(db);
  if (isDbAdmin(user, sec)) return undefined;
  if (!isDbMember(user, sec)) return securityError(user);
  if (second === '_compact' || second === '_view_cleanup') return { status: 401, reason: 'You are not a server or db admin.' };
  const writes = !READS.has(req.method);
  const designWrite = second === '_design' && writes && parts[3] !== '_update' && parts[3] !== '_view';
  const securityWrite = (second === '_security' && writes) || (second === '_local' && parts[2] === '_security');
  if (designWrite || securityWrite) return securityError(user, 'You are not a db or server admin.');
  return undefined;
}

/** Middleware: lets a request through to express-pouchdb only when its user may make it. */
export function authorize(app: ExpressPouchApp, pouch: PouchStatic) {
  return function authorizeRequest(req: Request, res: Response, next: NextFunction): void {
    decide(app, pouch, req).then((refusal) => {
      if (!refusal) return next();
      if ((refusal.status === 401 || refusal.status === 403) && !refusal.error) return refuse(req, res, refusal.status, refusal.reason);
      sendJson(res, refusal.status, { error: refusal.error ?? 'bad_request', reason: refusal.reason });
    }, next);
  };
}

/**
 * After the body is parsed: a user writing its own account may change its password, not its
 * roles (only admins may set roles), and may not create an account.
 */
export function guardOwnAccount(users: () => Promise<PouchDatabase>) {
  return function ownAccount(req: Request, res: Response, next: NextFunction): void {
    const user = (req as CouchSessionRequest).couchSession?.userCtx;
    const parts = pathParts(req.path);
    if (!user || user.roles.includes('_admin') || req.method !== 'PUT' || !parts || parts[0] !== USERS_DB || parts.length !== 2) return next();
    users()
      .then((db) => db.get(parts[1]))
      .then(
        (stored) => {
          const body = (req.body ?? {}) as { roles?: unknown };
          if (isDeepStrictEqual(body.roles, stored.roles)) return next();
          sendJson(res, 403, { error: 'forbidden', reason: 'Only _admin may set roles' });
        },
        () => sendJson(res, 403, { error: 'forbidden', reason: 'Only _admin may create accounts' }),
      );
  };
}
