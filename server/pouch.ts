/**
 * Typed access to the CommonJS packages behind the embedded server (PouchDB 9, express-pouchdb 4.2).
 * Neither ships type declarations, so the few members used here are declared locally
 * instead of as ambient modules that could clash with other components.
 */
import { createRequire } from 'node:module';
import type { Express, Request, RequestHandler } from 'express';

import { fastViews } from './views.js';

const require = createRequire(import.meta.url);

export interface ChangesFeed {
  on(event: 'change', listener: (change: ChangeRow) => void): ChangesFeed;
  on(event: 'complete', listener: (info: unknown) => void): ChangesFeed;
  on(event: 'error', listener: (error: unknown) => void): ChangesFeed;
  cancel(): void;
}

export interface ChangeRow {
  id: string;
  seq: number | string;
  changes: { rev: string }[];
  deleted?: boolean;
  doc?: Record<string, unknown>;
}

export interface ChangesResult {
  results: ChangeRow[];
  last_seq: number | string;
}

export interface PouchDatabase {
  changes(opts: Record<string, unknown> & { live: true }): ChangesFeed;
  changes(opts: Record<string, unknown>): Promise<ChangesResult>;
  get(id: string, opts?: Record<string, unknown>): Promise<Record<string, unknown>>;
  info(): Promise<unknown>;
  close(): Promise<void>;
}

export interface PouchStatic {
  new (name: string, opts?: Record<string, unknown>): PouchDatabase;
  defaults(opts: Record<string, unknown>): PouchStatic;
  /** PouchDB's node-fetch (with its cookie jar), which its HTTP adapter uses unless given `fetch`. */
  fetch(url: string, options?: Record<string, unknown>): Promise<unknown>;
  /** Installed by express-pouchdb (pouchdb-all-dbs). */
  allDbs(): Promise<string[]>;
  /** express-pouchdb's cache of open databases (see create-or-delete-dbs.js). */
  __dbCacheMap?: { forEach(cb: (db: PouchDatabase, name: string) => void): void };
}

/** The express app returned by express-pouchdb, with the members used here. */
export interface ExpressPouchApp extends Express {
  setPouchDB(pouch: PouchStatic): Promise<void>;
  daemonManager: { stop(pouch: PouchStatic): Promise<void> };
  dbWrapper: { wrap(name: string, db: PouchDatabase): Promise<void>; registerWrapper(fn: (name: string, db: PouchDatabase, next: () => void) => void): void };
  couchLogger?: { _stream?: { end(): void } };
}

export interface ExpressPouchOptions {
  mode: 'fullCouchDB' | 'minimumForPouchDB';
  configPath: string;
  logPath: string;
  overrideMode: { exclude: string[] };
}

export const PouchDB = require('pouchdb') as PouchStatic;
// Replaces PouchDB's per-call-vm map/reduce with one that compiles each function once (views.ts).
(PouchDB as unknown as { plugin(p: object): void }).plugin(fastViews);

export const expressPouchDB = require('express-pouchdb') as (opts: ExpressPouchOptions) => ExpressPouchApp;

const createOrDelete = require('express-pouchdb/lib/create-or-delete-dbs.js') as {
  getOrCreateDB(pouch: PouchStatic, name: string): Promise<PouchDatabase>;
};

const cleanFilename = require('express-pouchdb/lib/clean-filename.js') as (name: string) => string;

/**
 * The database a request names, through express-pouchdb's own cache (the instance its routes use),
 * or undefined when it does not exist (a read must never create a database).
 */
export async function openExistingDb(app: ExpressPouchApp, pouch: PouchStatic, rawName: string): Promise<PouchDatabase | undefined> {
  const name = cleanFilename(rawName);
  const all = await pouch.allDbs();
  if (!all.includes(name)) return undefined;
  const db = await createOrDelete.getOrCreateDB(pouch, name);
  await app.dbWrapper.wrap(name, db);
  return db;
}

/** The database of `name`, created when it does not exist (the server's own `_users`). */
export async function openOrCreateDb(app: ExpressPouchApp, pouch: PouchStatic, name: string): Promise<PouchDatabase> {
  const db = await createOrDelete.getOrCreateDB(pouch, cleanFilename(name));
  await app.dbWrapper.wrap(cleanFilename(name), db);
  return db;
}

/** Creates the database `name` if needed and waits until `allDbs` (what routes check) lists it. */
export async function ensureDb(app: ExpressPouchApp, pouch: PouchStatic, name: string): Promise<void> {
  const db = await openOrCreateDb(app, pouch, name);
  // PouchDB announces a new database (to pouchdb-all-dbs) once it is first used.
  await db.info();
  for (let attempt = 0; attempt < 200 && !(await pouch.allDbs()).includes(cleanFilename(name)); attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An authenticated user: name, roles, and the salt that signs its session cookies. */
export interface SessionUser {
  name: string;
  roles: readonly string[];
  salt: string;
}

/** express-pouchdb reads `req.couchSession.userCtx` to build the user context handed to validate_doc_update. */
export interface CouchSessionRequest extends Request {
  couchSession?: {
    ok: true;
    userCtx: { name: string | null; roles: string[] };
    info: { authenticated?: string; authentication_db?: string; authentication_handlers: string[] };
  };
}

export type Handler = RequestHandler;
