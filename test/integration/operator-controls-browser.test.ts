/**
 * The page's operator controls in a real chromium, against a real embedded server with real
 * accounts and the dashboard in process: read-only until an operator logs in; Pause records the
 * why with the operator's name (the row then says paused, by whom and why, and offers Resume);
 * "Retry failed proc1" shows the count before the operator confirms and retries exactly those.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import type { BrowserContext } from 'playwright-core';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { historyTo } from '../../core/provenance.js';
import type { Dashboard } from '../../dashboard/server.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { readControls } from '../../store/controls.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { assertChromium, launchChromium, startAdminDashboard } from '../support/browser.js';

const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const OPERATOR_PASSWORD = randomBytes(12).toString('hex');
const COORD_PASSWORD = randomBytes(12).toString('hex');

describe('operator controls on the page, in a browser', function () {
  this.timeout(120_000);
  let dir = '';
  let server: EmbeddedServer;
  let dashboard: Dashboard;
  let browser: BrowserContext | undefined;
  let config: MeshConfig;
  const database = 'controls_page';
  const db = (user: string, password: string) => new Database({ url: server.url, database, credentials: { user, password } });

  before(async () => {
    assertChromium();
    dir = testFolder('mesh-controls-page-');
    server = await startEmbeddedServer({
      site: 'alpha',
      dataDir: join(dir, 'server'),
      logger: silentLogger(),
      admin: { user: 'admin', password: ADMIN_PASSWORD },
      passwordIterations: 10,
    });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    await users.put({ _id: 'org.couchdb.user:op', type: 'user', name: 'op', roles: ['mesh-operator'], password: OPERATOR_PASSWORD });
    await users.put({ _id: 'org.couchdb.user:coord', type: 'user', name: 'coord', roles: ['mesh-coordinator'], password: COORD_PASSWORD });
    config = parseMeshConfig(
      {
        database,
        doc_type: 'daqdocument',
        sites: { alpha: { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') } },
        ingest: { site: 'alpha', quiet_s: 1 },
        steps: ['proc0', 'proc1'].map((name) => ({
          name,
          site: 'alpha',
          run: ['/bin/true'],
          out: join(dir, 'out', `{run_name}_{file_number}.${name}`),
          lease_s: 60,
        })),
      },
      join(dir, 'mesh.json'),
    );
    const admin = db('admin', ADMIN_PASSWORD);
    await admin.ensure();
    await pushDesigns(admin, config);
    await pushSecurity(admin, ['alpha']);
    // Three failed proc1 documents, stored by the coordinator's relay (fixtures, not runs).
    const failed = [0, 1, 2].map(
      (i): DaqDocument =>
        ({
          _id: `run_lg23b002_00${i}`,
          type: 'daqdocument',
          run_name: 'lg23b002',
          file_number: i,
          file: `/data/lg23b002_00${i}`,
          size_in_bytes: 1,
          date_closed: '2026-12-01T10:00:00.000Z',
          status: 'proc1 failed',
          proc0: { ok: true, attempts: 1 },
          pending: { proc1: { ok: false, attempts: 3, reason: 'exit code 137' } },
          history: historyTo('proc1 failed', ['proc0', 'proc1'], '2026-12-01T10:00:00.000Z', 'alpha/alpha-1', null),
        }) as DaqDocument,
    );
    assert.deepEqual(
      (await db('coord', COORD_PASSWORD).bulk(failed)).filter((r) => r.error),
      [],
    );
    dashboard = await startAdminDashboard(config, database, ADMIN_PASSWORD);
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    await server?.close();
  });

  it('read-only until an operator logs in; Pause records who and why; Retry failed shows the count before confirming', async () => {
    browser = await launchChromium(join(dir, 'chromium-profile'));
    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.accept(dialog.message().startsWith('retry') ? 'OOM fixed on the farm' : 'tape robot down');
    });
    await page.goto(dashboard.url);
    await page.waitForSelector('[data-step-control="proc1"] [data-control="pause:proc1"]');
    assert.equal(await page.isDisabled('[data-control="pause:proc1"]'), true, 'read-only before the login');
    assert.equal(await page.isDisabled('[data-retry-failed="proc1"]'), true);

    await page.fill('#login-user', 'op');
    await page.fill('#login-password', OPERATOR_PASSWORD);
    await page.selectOption('#login-site', 'alpha');
    await page.click('#login-form button[type="submit"]');
    await page.waitForSelector('#login-state:not([hidden])', { timeout: 10_000 });

    await page.click('[data-control="pause:proc1"]:not([disabled])');
    await page.waitForSelector('[data-step-control="proc1"][data-paused="yes"]', { timeout: 15_000 });
    const row = (await page.textContent('[data-step-control="proc1"]')) ?? '';
    assert.match(row, /paused since \d\d:\d\d:\d\d UTC by operator\/op \(dashboard\) \(op\): tape robot down/);
    assert.equal(await page.locator('[data-control="resume:proc1"]').count(), 1, 'a paused step offers Resume');
    const stored = await readControls(db('op', OPERATOR_PASSWORD));
    assert.deepEqual({ ...stored?.paused.proc1, since: '' }, { since: '', by: 'operator/op (dashboard)', user: 'op', why: 'tape robot down' });

    await page.click('[data-retry-failed="proc1"]:not([disabled])');
    await page.waitForFunction(() => /retried 3 of 3 failed proc1 documents/.test(document.querySelector('#notices')?.textContent ?? ''), undefined, {
      timeout: 15_000,
    });
    assert.ok(
      dialogs.some((d) => d.startsWith('retry 3 failed proc1 documents?')),
      `the count was shown before confirming: ${JSON.stringify(dialogs)}`,
    );
    for (const i of [0, 1, 2]) {
      const doc = await db('op', OPERATOR_PASSWORD).get<DaqDocument>(`run_lg23b002_00${i}`);
      assert.equal(doc?.status, 'good');
      const last = doc!.history[doc!.history.length - 1];
      assert.deepEqual([last.by, last.user, last.note], ['operator/op (dashboard)', 'op', 'retry requested: OOM fixed on the farm']);
    }
    await page.click('[data-control="resume:proc1"]:not([disabled])');
    await page.waitForSelector('[data-step-control="proc1"][data-paused="no"]', { timeout: 15_000 });
    assert.deepEqual(
      (await readControls(db('op', OPERATOR_PASSWORD)))?.history.map((e) => e.action),
      ['pause', 'resume'],
    );
  });
});
