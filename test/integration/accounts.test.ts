/**
 * Accounts end to end against a real `mesh server` process: `mesh couchapp push` writes the
 * database's `_security` once, `mesh users add` creates working accounts from a password file
 * and from stdin (never from argv), and `mesh status` says "not authorised", not "unreachable".
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { memberRoles } from '../../core/roles.js';
import { basic, rawRequest } from '../support/http-raw.js';
import { makeMesh, type TestMesh } from '../support/mesh.js';
import { runMesh, startServerProcess, stopAllServerProcesses, type ServerProcess } from '../support/server-process.js';

const ADMIN = { user: 'alpha-admin', password: 'Alpha-admin-pw-k2!' };
const ADMIN_ENV = { MESH_ALPHA_USER: ADMIN.user, MESH_ALPHA_PASSWORD: ADMIN.password };
const AS_ADMIN = { authorization: basic(ADMIN.user, ADMIN.password) };

describe('accounts: couchapp push _security, mesh users add, status when refused', function () {
  let server: ServerProcess;
  let mesh: TestMesh;

  before(async function () {
    server = await startServerProcess({ site: 'alpha', env: ADMIN_ENV });
    mesh = await makeMesh(server.url, { credentials: ADMIN, push: false });
  });
  after(async function () {
    await server?.stop();
    await stopAllServerProcesses();
  });

  it('couchapp push writes _security with the mesh roles as members, and writes nothing the second time', async function () {
    const path = `/${mesh.config.database}/_security`;
    assert.deepEqual((await rawRequest(server.url, path, { headers: AS_ADMIN })).body, {});
    const first = await runMesh(['--config', mesh.configFile, 'couchapp', 'push'], ADMIN_ENV);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /_security updated/);
    const security = (await rawRequest(server.url, path, { headers: AS_ADMIN })).body as { members: { roles: string[] } };
    assert.deepEqual(security.members.roles, [...memberRoles(['alpha'])].sort());
    const stored = await rawRequest(server.url, `/${mesh.config.database}/_local/_security`, { headers: AS_ADMIN });
    const second = await runMesh(['--config', mesh.configFile, 'couchapp', 'push'], ADMIN_ENV);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /_security unchanged/);
    const again = await rawRequest(server.url, `/${mesh.config.database}/_local/_security`, { headers: AS_ADMIN });
    assert.equal((again.body as { _rev: string })._rev, (stored.body as { _rev: string })._rev, 'a second push wrote _security again');
    // Without admin credentials, push is refused with a message that says what is needed.
    const anonymous = await runMesh(['--config', mesh.configFile, 'couchapp', 'push'], { MESH_ALPHA_USER: '' });
    assert.notEqual(anonymous.status, 0);
  });

  it('mesh users add creates an agent account from a password file; it logs in with its role and is a member', async function () {
    const secret = 'agent-pw-from-file-93x';
    const file = join(mesh.dir, 'agent.pw');
    await writeFile(file, `${secret}\n`, { mode: 0o600 });
    const add = await runMesh(
      ['--config', mesh.configFile, 'users', 'add', 'alpha-agent', '--role', 'agent', '--site', 'alpha', '--password-file', file],
      ADMIN_ENV,
    );
    assert.equal(add.status, 0, add.stderr);
    assert.match(add.stdout, /account alpha-agent created \(role mesh-agent:alpha\)/);
    assert.ok(!add.stdout.includes(secret) && !add.stderr.includes(secret) && !server.output().includes(secret));
    const login = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'alpha-agent', password: secret } });
    assert.deepEqual(login.body, { ok: true, name: 'alpha-agent', roles: ['mesh-agent:alpha'] });
    const read = await rawRequest(server.url, `/${mesh.config.database}`, { headers: { authorization: basic('alpha-agent', secret) } });
    assert.equal(read.status, 200);
  });

  it('mesh users add reads the password from stdin when it is not a terminal, and updates an existing account', async function () {
    const add = await runMesh(['--config', mesh.configFile, 'users', 'add', 'op-1', '--role', 'operator'], ADMIN_ENV, 20_000, 'stdin-pw-1\n');
    assert.equal(add.status, 0, add.stderr);
    assert.match(add.stdout, /account op-1 created \(role mesh-operator\)/);
    const update = await runMesh(['--config', mesh.configFile, 'users', 'add', 'op-1', '--role', 'reader'], ADMIN_ENV, 20_000, 'stdin-pw-2\n');
    assert.equal(update.status, 0, update.stderr);
    assert.match(update.stdout, /account op-1 updated \(role mesh-reader\)/);
    const oldPassword = await rawRequest(server.url, '/_session', { method: 'POST', body: { name: 'op-1', password: 'stdin-pw-1' } });
    assert.equal(oldPassword.status, 401);
    const session = await rawRequest(server.url, '/_session', { headers: { authorization: basic('op-1', 'stdin-pw-2') } });
    assert.deepEqual((session.body as { userCtx: unknown }).userCtx, { name: 'op-1', roles: ['mesh-reader'] });
  });

  it('mesh users add refuses bad input with exit 2 and a clear message', async function () {
    const cases: Array<[string[], RegExp]> = [
      [['users', 'add', 'x1', '--role', 'agent'], /--role agent needs --site/],
      [['users', 'add', 'x2', '--role', 'king'], /not a role/],
      [['users', 'add', 'x3', '--role', 'agent', '--site', 'mars'], /--site is "mars"/],
      [['users', 'add', '_x4', '--role', 'reader'], /not usable/],
      [['users', 'add', 'x5', '--role', 'reader', '--password-file', join(mesh.dir, 'missing.pw')], /cannot be read/],
    ];
    for (const [args, message] of cases) {
      const run = await runMesh(['--config', mesh.configFile, ...args], ADMIN_ENV, 20_000, 'pw\n');
      assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
    const empty = await runMesh(['--config', mesh.configFile, 'users', 'add', 'x6', '--role', 'reader'], ADMIN_ENV, 20_000, '\n');
    assert.equal(empty.status, 2);
  });

  it('mesh status reports a refused account as "not authorised: <reason>", never as unreachable', async function () {
    await rawRequest(server.url, '/_users/org.couchdb.user:outsider', {
      method: 'PUT',
      headers: AS_ADMIN,
      body: { name: 'outsider', password: 'outsider-pw', roles: [], type: 'user' },
    });
    const outsider = { MESH_ALPHA_USER: 'outsider', MESH_ALPHA_PASSWORD: 'outsider-pw' };
    const json = await runMesh(['--config', mesh.configFile, 'status', '--json'], outsider, 30_000);
    const status = JSON.parse(json.stdout) as { databases: Array<{ error?: string; not_authorised?: boolean }>; replication: unknown[] };
    assert.equal(status.databases[0].not_authorised, true);
    assert.equal(status.databases[0].error, 'not authorised: You are not allowed to access this db.');
    const text = await runMesh(['--config', mesh.configFile, 'status'], outsider, 30_000);
    assert.match(text.stdout, /not authorised: You are not allowed to access this db\./);
    assert.doesNotMatch(text.stdout, /unreachable/i);
    const wrong = await runMesh(['--config', mesh.configFile, 'status', '--json'], { MESH_ALPHA_USER: 'ghost', MESH_ALPHA_PASSWORD: 'nope' }, 30_000);
    assert.equal((JSON.parse(wrong.stdout) as typeof status).databases[0].error, 'not authorised: Name or password is incorrect.');
  });
});
