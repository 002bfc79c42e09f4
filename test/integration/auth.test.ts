/**
 * The embedded server's accounts and database security, over HTTP against a real server, as an
 * attacker would try them: who may read and write, the exact 401/403 bodies of CouchDB 3, the
 * `_users` hashing, cookie sessions, and the login lockout (by user and peer address).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Database } from '../../store/database.js';
import { silentLogger } from '../../core/log.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { testFolder } from '../support/folders.js';
import { basic, rawRequest } from '../support/http-raw.js';

const ADMIN = { user: 'root-admin', password: 'admin-pw-7Hq!never-logged' };
const AS_ADMIN = { authorization: basic(ADMIN.user, ADMIN.password) };
const NOT_ALLOWED = { error: 'forbidden', reason: 'You are not allowed to access this db.' };
const WRONG = { error: 'unauthorized', reason: 'Name or password is incorrect.' };
const LOCKED = { error: 'forbidden', reason: 'Account is temporarily locked due to multiple authentication failures' };

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe('embedded server: accounts, _security, sessions and lockout', function () {
  let server: EmbeddedServer;
  let dataDir: string;
  let counter = 0;

  before(async function () {
    dataDir = testFolder('mesh-auth-');
    server = await startEmbeddedServer({ site: 'authsite', dataDir, admin: ADMIN, logger: silentLogger() });
  });
  after(async function () {
    await server?.close();
  });

  async function addUser(name: string, password: string, roles: string[]): Promise<void> {
    const answer = await rawRequest(server.url, `/_users/org.couchdb.user:${encodeURIComponent(name)}`, {
      method: 'PUT',
      headers: AS_ADMIN,
      body: { name, password, roles, type: 'user' },
    });
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
  }

  /** A fresh database whose members are the role `member-role` and the name `named-member`. */
  async function securedDb(): Promise<string> {
    const name = `secured-${++counter}`;
    assert.equal((await rawRequest(server.url, `/${name}`, { method: 'PUT', headers: AS_ADMIN })).status, 201);
    const put = await rawRequest(server.url, `/${name}/_security`, {
      method: 'PUT',
      headers: AS_ADMIN,
      body: { admins: { names: [], roles: [] }, members: { names: ['named-member'], roles: ['member-role'] } },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    return name;
  }

  before(async function () {
    await addUser('alice', 'alice-pw-1', ['member-role']);
    await addUser('named-member', 'nm-pw-2', []);
    await addUser('mallory', 'mallory-pw-3', ['other-role']);
  });

  it('keeps a database without members for admins only (CouchDB 3 admin_only)', async function () {
    const name = `adminonly-${++counter}`;
    assert.equal((await rawRequest(server.url, `/${name}`, { method: 'PUT', headers: AS_ADMIN })).status, 201);
    const user = await rawRequest(server.url, `/${name}`, { headers: { authorization: basic('alice', 'alice-pw-1') } });
    assert.equal(user.status, 403);
    assert.deepEqual(user.body, NOT_ALLOWED);
  });

  it('lets members write data but never design documents or _security, by any path', async function () {
    const db = await securedDb();
    const alice = { authorization: basic('alice', 'alice-pw-1') };
    assert.equal((await rawRequest(server.url, `/${db}/data1`, { method: 'PUT', headers: alice, body: { a: 1 } })).status, 201);
    const design = await rawRequest(server.url, `/${db}/_design/evil`, { method: 'PUT', headers: alice, body: { validate_doc_update: 'function(){}' } });
    assert.equal(design.status, 403);
    assert.deepEqual(design.body, { error: 'forbidden', reason: 'You are not a db or server admin.' });
    const bulk = await rawRequest(server.url, `/${db}/_bulk_docs`, {
      method: 'POST',
      headers: alice,
      body: { docs: [{ _id: '_design/evil2', views: {} }, { _id: 'fine' }] },
    });
    assert.equal(bulk.status, 201);
    const rows = bulk.body as Array<{ id: string; error?: string }>;
    assert.ok(rows.find((r) => r.id === '_design/evil2')?.error, JSON.stringify(rows));
    assert.equal((await rawRequest(server.url, `/${db}/_design/evil2`, { headers: AS_ADMIN })).status, 404);
    const security = await rawRequest(server.url, `/${db}/_security`, { method: 'PUT', headers: alice, body: { members: { names: [], roles: [] } } });
    assert.equal(security.status, 403);
    const local = await rawRequest(server.url, `/${db}/_local/_security`, { method: 'PUT', headers: alice, body: { security: {} } });
    assert.equal(local.status, 403);
    const bulkLocal = await rawRequest(server.url, `/${db}/_bulk_docs`, {
      method: 'POST',
      headers: alice,
      body: { docs: [{ _id: '_local/_security', security: {} }] },
    });
    assert.notEqual((bulkLocal.body as Array<{ error?: string }>)[0]?.error, undefined, JSON.stringify(bulkLocal.body));
    const stillSecured = await rawRequest(server.url, `/${db}/_security`, { headers: AS_ADMIN });
    assert.deepEqual((stillSecured.body as { members: unknown }).members, { names: ['named-member'], roles: ['member-role'] });
    // Still a members-only database: the outsider is still out.
    const outsider = await rawRequest(server.url, `/${db}/data1`, { headers: { authorization: basic('mallory', 'mallory-pw-3') } });
    assert.equal(outsider.status, 403);
    assert.equal((await rawRequest(server.url, `/_all_dbs`, { headers: alice })).status, 401);
    assert.equal((await rawRequest(server.url, `/new-db-${counter}`, { method: 'PUT', headers: alice })).status, 401);
  });

  it('hands validate_doc_update the authenticated user and the database _security', async function () {
    const db = await securedDb();
    const validator =
      'function (newDoc, oldDoc, userCtx, secObj) { if (userCtx.roles.indexOf("_admin") === -1 && userCtx.name !== "alice") throw({forbidden: "seen " + JSON.stringify(userCtx) + " " + JSON.stringify(secObj.members)}); }';
    assert.equal(
      (await rawRequest(server.url, `/${db}/_design/check`, { method: 'PUT', headers: AS_ADMIN, body: { validate_doc_update: validator } })).status,
      201,
    );
    assert.equal(
      (await rawRequest(server.url, `/${db}/by-alice`, { method: 'PUT', headers: { authorization: basic('alice', 'alice-pw-1') }, body: {} })).status,
      201,
    );
    const other = await rawRequest(server.url, `/${db}/by-named`, { method: 'PUT', headers: { authorization: basic('named-member', 'nm-pw-2') }, body: {} });
    assert.equal(other.status, 403);
    const reason = (other.body as { reason: string }).reason;
    assert.match(reason, /"name":"named-member"/);
    assert.match(reason, /"names":\["named-member"\]/);
  });

  it('stores _users passwords only as PBKDF2 hashes; a user reads its own account only, never sets its roles', async function () {
    const secret = 'clear-text-Pw-9x7!';
    await addUser('hashed', secret, ['member-role']);
    const stored = await rawRequest(server.url, '/_users/org.couchdb.user:hashed', { headers: AS_ADMIN });
    const doc = stored.body as Record<string, unknown>;
    assert.equal(doc.password, undefined);
    assert.equal(doc.password_scheme, 'pbkdf2');
    assert.equal(doc.pbkdf2_prf, 'sha256');
    assert.ok(typeof doc.iterations === 'number' && doc.iterations >= 100_000);
    assert.match(String(doc.salt), /^[0-9a-f]{32}$/);
    assert.match(String(doc.derived_key), /^[0-9a-f]{64}$/);
    // Nowhere on disk in clear (LevelDB files, logs, config).
    for (const file of filesUnder(dataDir)) assert.ok(!readFileSync(file).includes(secret), `${file} holds the clear password`);
    const own = await rawRequest(server.url, '/_users/org.couchdb.user:hashed', { headers: { authorization: basic('hashed', secret) } });
    assert.equal(own.status, 200);
    const others = await rawRequest(server.url, '/_users/org.couchdb.user:alice', { headers: { authorization: basic('hashed', secret) } });
    assert.equal(others.status, 404);
    assert.equal((await rawRequest(server.url, '/_users/_all_docs', { headers: { authorization: basic('hashed', secret) } })).status, 401);
    const promote = await rawRequest(server.url, '/_users/org.couchdb.user:hashed', {
      method: 'PUT',
      headers: { authorization: basic('hashed', secret) },
      body: { ...doc, roles: ['_admin'] },
    });
    assert.equal(promote.status, 403);
    const newAccount = await rawRequest(server.url, '/_users/org.couchdb.user:sock', {
      method: 'PUT',
      headers: { authorization: basic('hashed', secret) },
      body: { name: 'sock', password: 'x', roles: [], type: 'user' },
    });
    assert.notEqual(newAccount.status, 201);
    const session = await rawRequest(server.url, '/_session', { headers: { authorization: basic('hashed', secret) } });
    assert.deepEqual((session.body as { userCtx: unknown }).userCtx, { name: 'hashed', roles: ['member-role'] });
  });

  it('Database.session() names the account a client writes as', async function () {
    const db = await securedDb();
    assert.deepEqual(await new Database({ url: server.url, database: db, credentials: { user: 'alice', password: 'alice-pw-1' } }).session(), {
      name: 'alice',
      roles: ['member-role'],
    });
    assert.deepEqual(await new Database({ url: server.url, database: db }).session(), { name: null, roles: [] });
    await assert.rejects(new Database({ url: server.url, database: db, credentials: { user: 'alice', password: 'wrong' } }).session(), {
      code: 'UNAUTHORIZED',
    });
  });

  it('logs in with POST /_session, serves the cookie session, and ends it with DELETE /_session', async function () {
    const db = await securedDb();
    const wrong = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'alice', password: 'nope' } });
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.body, WRONG);
    const login = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'alice', password: 'alice-pw-1' } });
    assert.equal(login.status, 200);
    assert.deepEqual(login.body, { ok: true, name: 'alice', roles: ['member-role'] });
    const setCookie = String(login.headers['set-cookie']);
    assert.match(setCookie, /^AuthSession=[A-Za-z0-9_-]+; Version=1; Path=\/; HttpOnly/);
    const cookie = setCookie.split(';')[0];
    const session = await rawRequest(server.url, '/_session', { headers: { cookie } });
    assert.deepEqual(session.body, {
      ok: true,
      userCtx: { name: 'alice', roles: ['member-role'] },
      info: { authenticated: 'cookie', authentication_db: '_users', authentication_handlers: ['cookie', 'default'] },
    });
    assert.equal((await rawRequest(server.url, `/${db}`, { headers: { cookie } })).status, 200);
    // A forged cookie (another name, same signature) is nobody.
    const [name, time, mac] = Buffer.from(cookie.slice('AuthSession='.length), 'base64url').toString().split(':');
    assert.equal(name, 'alice');
    const forged = `AuthSession=${Buffer.from(`mallory:${time}:${mac}`).toString('base64url')}`;
    const forgedSession = await rawRequest(server.url, '/_session', { headers: { cookie: forged } });
    assert.deepEqual((forgedSession.body as { userCtx: unknown }).userCtx, { name: null, roles: [] });
    const logout = await rawRequest(server.url, '/_session', { method: 'DELETE', headers: { cookie } });
    assert.equal(logout.status, 200);
    assert.match(String(logout.headers['set-cookie']), /^AuthSession=; .*Max-Age=0/);
    const anonymous = await rawRequest(server.url, '/_session');
    assert.deepEqual(anonymous.body, { ok: true, userCtx: { name: null, roles: [] }, info: { authentication_handlers: ['cookie', 'default'] } });
    assert.equal((await rawRequest(server.url, '/')).status, 200);
    assert.equal((await rawRequest(server.url, '/_up')).status, 200);
    assert.equal((await rawRequest(server.url, '/_all_dbs')).status, 401);
  });

  it('locks one user from one address after 5 failed logins, correct password included; other users and addresses unaffected', async function () {
    await addUser('victim', 'victim-pw-ok', ['member-role']);
    await addUser('bystander', 'bystander-pw-ok', ['member-role']);
    const db = await securedDb();
    const asVictim = (password: string, localAddress = '127.0.0.1') =>
      rawRequest(server.url, `/${db}`, { headers: { authorization: basic('victim', password) }, localAddress });
    for (let i = 1; i <= 4; i++) assert.equal((await asVictim(`wrong-${i}`)).status, 401, `failure ${i}`);
    // Not locked yet: four failures, the right password still works.
    assert.equal((await asVictim('victim-pw-ok')).status, 200);
    const fifth = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'victim', password: 'wrong-5' } });
    assert.deepEqual(fifth.body, WRONG);
    const locked = await asVictim('victim-pw-ok');
    assert.equal(locked.status, 403);
    assert.deepEqual(locked.body, LOCKED);
    const lockedLogin = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'victim', password: 'victim-pw-ok' } });
    assert.deepEqual(lockedLogin.body, LOCKED);
    // Another address, and another user from the same address, are not locked.
    assert.equal((await asVictim('victim-pw-ok', '127.0.0.2')).status, 200);
    assert.equal((await rawRequest(server.url, `/${db}`, { headers: { authorization: basic('bystander', 'bystander-pw-ok') } })).status, 200);
  });

  it('locks the server admin too (what a dashboard trying passwords everywhere did)', async function () {
    const fromAddress = '127.0.0.3';
    for (let i = 1; i <= 5; i++)
      assert.equal(
        (await rawRequest(server.url, '/_all_dbs', { headers: { authorization: basic(ADMIN.user, `guess-${i}`) }, localAddress: fromAddress })).status,
        401,
      );
    const locked = await rawRequest(server.url, '/_all_dbs', { headers: AS_ADMIN, localAddress: fromAddress });
    assert.deepEqual(locked.body, LOCKED);
    assert.equal((await rawRequest(server.url, '/_all_dbs', { headers: AS_ADMIN })).status, 200);
  });
});
