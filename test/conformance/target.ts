/**
 * The server the conformance suite runs against, and the few HTTP helpers its tests share.
 *
 * Without COUCHDB_URL: one embedded server (`mesh server`) started as a real child process for
 * the whole suite, its admin password made up at run time. With COUCHDB_URL (and the admin's
 * COUCHDB_USER / COUCHDB_PASSWORD): that server, whatever it is. The password never goes into a
 * URL or a message: it travels only in an `Authorization` header.
 *
 * Everything a test creates (databases, `_users` accounts, `_replicator` jobs) carries the run's
 * random prefix and is deleted by the test's own `after`, so a run against someone's deployment
 * leaves nothing behind.
 */
import { waitFor as waitUntil } from '../support/mesh.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

export interface Target {
  /** Server URL without credentials and without a trailing slash. */
  url: string;
  /** True for the embedded server started here (used in messages only, never to skip a check). */
  embedded: boolean;
  adminAuth: string;
}

export interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** Every request of the suite is bounded by this (longpolls pass their own, longer bound). */
const REQUEST_TIMEOUT_MS = 15_000;

/** A prefix unique to this run: `conformance_<random>_`. CouchDB database names must start with a lower-case letter. */
export const RUN_PREFIX = `conformance_${randomBytes(4).toString('hex')}_`;

export function basicAuth(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

/** A throwaway password, made at run time. */
export function throwawayPassword(): string {
  return randomBytes(18).toString('base64url');
}

let started: Promise<{ target: Target; server?: ServerProcess }> | undefined;

async function start(): Promise<{ target: Target; server?: ServerProcess }> {
  const given = process.env.COUCHDB_URL;
  if (given) {
    const url = new URL(given);
    if (url.username || url.password) throw new Error('COUCHDB_URL must not carry credentials: give them in COUCHDB_USER and COUCHDB_PASSWORD');
    const user = process.env.COUCHDB_USER;
    const password = process.env.COUCHDB_PASSWORD;
    if (!user || !password) throw new Error('COUCHDB_URL is set: COUCHDB_USER and COUCHDB_PASSWORD must name a server admin');
    return { target: { url: url.toString().replace(/\/+$/, ''), embedded: false, adminAuth: basicAuth(user, password) } };
  }
  const user = 'conformance-admin';
  const password = throwawayPassword();
  const server = await startServerProcess({ site: 'conformance', env: { MESH_CONFORMANCE_USER: user, MESH_CONFORMANCE_PASSWORD: password } });
  return { target: { url: server.url, embedded: true, adminAuth: basicAuth(user, password) }, server };
}

/** The server under test, started once for the whole suite. */
export async function target(): Promise<Target> {
  started ??= start();
  return (await started).target;
}

/** What this run left on the server: databases, `_users` accounts and `_replicator` jobs carrying its prefix. */
async function leftovers(): Promise<string[]> {
  const range = (prefix: string) => `startkey=${encodeURIComponent(JSON.stringify(prefix))}&endkey=${encodeURIComponent(JSON.stringify(prefix + '\ufff0'))}`;
  const dbs = await request<string[]>('/_all_dbs');
  const users = await request<{ rows?: Array<{ id: string }> }>(`/_users/_all_docs?${range(`org.couchdb.user:${RUN_PREFIX}`)}`);
  const jobs = await request<{ rows?: Array<{ id: string }> }>(`/_replicator/_all_docs?${range(RUN_PREFIX)}`);
  expectStatus(dbs, 200, 'GET /_all_dbs');
  expectStatus(users, 200, 'GET /_users/_all_docs');
  if (jobs.status !== 404) expectStatus(jobs, 200, 'GET /_replicator/_all_docs');
  return [
    ...(Array.isArray(dbs.body) ? dbs.body.filter((name) => name.startsWith(RUN_PREFIX)) : []),
    ...(users.body.rows ?? []).map((r) => r.id),
    ...(jobs.body.rows ?? []).map((r) => `_replicator/${r.id}`),
  ];
}

/**
 * After each conformance file (its last `after`): nothing of the run is left, then the embedded
 * server stops. Not a root hook: under `mocha --parallel` a worker runs several files in one
 * process and loads this module once, so a root hook would stop only the first file's server and
 * leave the others running after the suite.
 */
export async function releaseTarget(): Promise<void> {
  if (!started) return;
  const { server } = await started.catch(() => ({ server: undefined }));
  try {
    assert.deepEqual(await leftovers(), [], 'the conformance run left these behind');
  } finally {
    started = undefined;
    await server?.stop();
    // Its data folder too: stopAllServerProcesses, which removes the others, is not run here.
    if (server) await rm(server.dataDir, { recursive: true, force: true });
  }
}

export interface RequestOptions {
  method?: string;
  /** An object is sent as JSON; a string as it is (with a JSON content type). */
  body?: unknown;
  /** `Authorization` value; `admin` (the default) for the server admin, `null` for anonymous. */
  auth?: string | 'admin' | null;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One HTTP request: the raw status, headers and parsed body (text when it is not JSON). */
export async function request<T = unknown>(path: string, options: RequestOptions = {}): Promise<Answer<T>> {
  const t = await target();
  const headers = new Headers(options.headers);
  const auth = options.auth === undefined || options.auth === 'admin' ? t.adminAuth : options.auth;
  if (auth !== null) headers.set('authorization', auth);
  if (!headers.has('accept')) headers.set('accept', 'application/json');
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
  }
  const method = options.method ?? 'GET';
  const res = await fetch(t.url + path, { method, headers, body, signal: AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** Asserts the status (and, when given, the whole `{error, reason}` or a part of the body). */
export function expectStatus(answer: Answer, status: number, what: string): void {
  assert.equal(answer.status, status, `${what}: expected ${status}, got ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`);
}

export function expectError(answer: Answer, status: number, error: string, reason: string | RegExp | undefined, what: string): void {
  expectStatus(answer, status, what);
  const body = answer.body as { error?: unknown; reason?: unknown };
  assert.equal(body.error, error, `${what}: error`);
  if (typeof reason === 'string') assert.equal(body.reason, reason, `${what}: reason`);
  else if (reason) assert.match(String(body.reason), reason, `${what}: reason`);
}

/** Polls `check` until it returns something other than undefined, at most `ms` (support/mesh.ts waitFor, which wants a truthy value). */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const found = await waitUntil(
    what,
    async () => {
      const value = await check();
      return value === undefined ? undefined : { value };
    },
    ms,
  );
  return found.value;
}

const enc = encodeURIComponent;

/**
 * Databases and accounts made by one test file, deleted by `cleanUp()` in its `after`.
 * A failure to delete is reported (the suite must leave nothing behind), not swallowed.
 */
export class Scratch {
  private readonly dbs = new Set<string>();
  private readonly users = new Set<string>();
  private readonly replicatorDocs = new Set<string>();
  private counter = 0;

  constructor(private readonly label: string) {}

  /** A fresh database name of this run (not created). */
  name(what: string): string {
    this.counter += 1;
    return `${RUN_PREFIX}${this.label}_${what}_${this.counter}`;
  }

  async db(what: string): Promise<string> {
    const name = this.name(what);
    this.dbs.add(name);
    expectStatus(await request(`/${enc(name)}`, { method: 'PUT' }), 201, `creating database ${name}`);
    return name;
  }

  /** A `_users` account of this run with a throwaway password; returns its name and Basic header. */
  async user(what: string, roles: string[] = []): Promise<{ name: string; password: string; auth: string }> {
    this.counter += 1;
    const name = `${RUN_PREFIX}${this.label}_${what}_${this.counter}`;
    const password = throwawayPassword();
    this.users.add(name);
    const put = await request(`/_users/${enc(`org.couchdb.user:${name}`)}`, {
      method: 'PUT',
      body: { _id: `org.couchdb.user:${name}`, name, password, roles, type: 'user' },
    });
    assert.ok(
      put.status === 201 || put.status === 202,
      `creating _users account ${name}: ${put.status} ${JSON.stringify(put.body)} (does the server have a _users database?)`,
    );
    return { name, password, auth: basicAuth(name, password) };
  }

  /** Registers a `_replicator` document id for deletion. */
  replicatorDoc(id: string): void {
    this.replicatorDocs.add(id);
  }

  async cleanUp(): Promise<void> {
    const problems: string[] = [];
    for (const id of this.replicatorDocs) if (!(await deleteDoc('_replicator', id))) problems.push(`_replicator/${id}`);
    for (const name of this.users) if (!(await deleteDoc('_users', `org.couchdb.user:${name}`))) problems.push(`_users account ${name}`);
    for (const name of this.dbs) {
      const answer = await request(`/${enc(name)}`, { method: 'DELETE' });
      if (answer.status !== 200 && answer.status !== 202 && answer.status !== 404) problems.push(`database ${name} (${answer.status})`);
    }
    this.replicatorDocs.clear();
    this.users.clear();
    this.dbs.clear();
    assert.deepEqual(problems, [], 'left behind');
  }
}

/** Deletes every revision of a document until it is gone (a replicator may write between our read and our delete). */
async function deleteDoc(db: string, id: string): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await request<{ _rev?: string }>(`/${db}/${enc(id)}`);
    if (current.status === 404) return true;
    if (current.status !== 200 || !current.body._rev) return false;
    const deleted = await request(`/${db}/${enc(id)}?rev=${enc(current.body._rev)}`, { method: 'DELETE' });
    if (deleted.status === 200 || deleted.status === 202) return true;
    if (deleted.status !== 409) return false;
  }
  return false;
}

/** `/<db>/<path>` with the database name encoded. */
export function dbPath(db: string, path = ''): string {
  return `/${enc(db)}${path ? `/${path}` : ''}`;
}
