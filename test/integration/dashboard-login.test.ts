/**
 * Issue 9, item 3: operator logins on the status page must never lock anyone out. Two real
 * servers whose admins share a name but not a password (modane's and kit's in the report); many
 * logins with beta's password must leave alpha's account usable, and each login is one try on
 * one server (a wrong one counts once towards the lockout, never on another server).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DashboardProcess, startDashboardProcess } from '../support/dashboard.js';
import { testFolder } from '../support/folders.js';
import { basic, rawRequest } from '../support/http-raw.js';
import { uniqueDatabase } from '../support/mesh.js';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const USER = 'ops';
const ALPHA_PASSWORD = 'alpha-only-pw-4Kx';
const BETA_PASSWORD = 'beta-only-pw-9Qz';
const ENV = { MESH_ALPHA_USER: USER, MESH_ALPHA_PASSWORD: ALPHA_PASSWORD, MESH_BETA_USER: USER, MESH_BETA_PASSWORD: BETA_PASSWORD };
const JSON_POST = { 'Content-Type': 'application/json', 'X-Mesh-Dashboard': '1' };
const LOCKED = 'Account is temporarily locked due to multiple authentication failures';

describe('mesh dashboard: operator logins never lock another server (real lockout)', function () {
  let alpha: ServerProcess;
  let beta: ServerProcess;
  let dashboard: DashboardProcess;

  before(async function () {
    [alpha, beta] = await Promise.all([startServerProcess({ site: 'alpha', env: ENV }), startServerProcess({ site: 'beta', env: ENV })]);
    const dir = testFolder('mesh-dash-login-');
    const raw = {
      database: uniqueDatabase('dashlogin'),
      doc_type: 'daqdocument',
      sites: {
        alpha: { server: alpha.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') },
        beta: { server: beta.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') },
      },
      ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: [
        {
          name: 'proc0',
          site: 'alpha',
          run: [process.execPath, '-e', ''],
          out: join(dir, 'out', '{run_name}_{file_number}'),
          timeout_s: 30,
          max_attempts: 1,
          lease_s: 60,
        },
      ],
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw));
    dashboard = await startDashboardProcess(configFile, ENV);
  });
  after(async function () {
    await dashboard?.stop();
    await Promise.all([alpha?.stop(), beta?.stop()]);
    await stopAllServerProcesses();
  });

  const login = async (body: object) => {
    const res = await fetch(new URL('/api/login', dashboard.url), { method: 'POST', headers: JSON_POST, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { servers?: string[]; reason?: string } };
  };
  const alphaAdminWorks = async () => (await rawRequest(alpha.url, '/_all_dbs', { headers: { authorization: basic(USER, ALPHA_PASSWORD) } })).status;

  it("twelve logins with beta's password (for beta) leave alpha's admin unlocked", async function () {
    for (let i = 1; i <= 12; i++) {
      const answer = await login({ user: USER, password: BETA_PASSWORD, site: 'beta' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.servers, ['beta']);
    }
    // Without a site, nothing is sent anywhere.
    for (let i = 1; i <= 6; i++) assert.equal((await login({ user: USER, password: BETA_PASSWORD })).status, 400);
    assert.equal(await alphaAdminWorks(), 200, "alpha's admin was locked out by logins meant for beta");
  });

  it('a wrong login is one try on one server: four wrong ones still let the right one in, the fifth locks that server only', async function () {
    for (let i = 1; i <= 4; i++) assert.equal((await login({ user: USER, password: `typo-${i}`, site: 'alpha' })).status, 403);
    assert.equal((await login({ user: USER, password: ALPHA_PASSWORD, site: 'alpha' })).status, 200, 'four wrong logins counted more than four failures');
    assert.equal((await login({ user: USER, password: 'typo-5', site: 'alpha' })).status, 403);
    const locked = await login({ user: USER, password: ALPHA_PASSWORD, site: 'alpha' });
    assert.equal(locked.status, 403);
    assert.match(String(locked.body.reason), new RegExp(LOCKED));
    const otherServer = await rawRequest(beta.url, '/_all_dbs', { headers: { authorization: basic(USER, BETA_PASSWORD) } });
    assert.equal(otherServer.status, 200, 'wrong logins for alpha locked beta');
  });
});
