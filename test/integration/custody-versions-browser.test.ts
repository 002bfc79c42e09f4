/**
 * Issue 14 on the page, in a real chromium against a real embedded server and the dashboard in
 * process: the custody section (files deleted by `mesh purge`, the files still at the DAQ by
 * agreeing copies, a disagreeing copy apart), the records older than their step's version, and a
 * document's verified copies, its deletion and its superseded records in words.
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
import { transition } from '../../core/state.js';
import type { Dashboard } from '../../dashboard/server.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { assertChromium, launchChromium, startAdminDashboard } from '../support/browser.js';

const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const COORD_PASSWORD = randomBytes(12).toString('hex');
const SHA = 'a'.repeat(64);
const AT = '2026-12-01T10:00:00.000Z';
const STEPS = ['proc0', 'proc1'];

describe('custody and versions on the page, in a browser', function () {
  this.timeout(120_000);
  let dir = '';
  let server: EmbeddedServer;
  let dashboard: Dashboard;
  let browser: BrowserContext | undefined;
  let config: MeshConfig;
  const database = 'custody_page';

  before(async () => {
    assertChromium();
    dir = testFolder('mesh-custody-page-');
    server = await startEmbeddedServer({
      site: 'alpha',
      dataDir: join(dir, 'server'),
      logger: silentLogger(),
      admin: { user: 'admin', password: ADMIN_PASSWORD },
      passwordIterations: 10,
    });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    await users.put({ _id: 'org.couchdb.user:coord', type: 'user', name: 'coord', roles: ['mesh-coordinator'], password: COORD_PASSWORD });
    const site = { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') };
    config = parseMeshConfig(
      {
        database,
        doc_type: 'daqdocument',
        sites: { alpha: site, beta: { ...site, storage: join(dir, 'beta') } },
        ingest: { site: 'alpha', quiet_s: 1 },
        steps: [
          { name: 'proc0', site: 'alpha', to: 'beta', custody: true, run: ['/bin/true'], out: join(dir, 'beta', '{run_name}_{file_number}'), lease_s: 60 },
          { name: 'proc1', site: 'beta', version: '2.0', run: ['/bin/true'], out: join(dir, 'out', '{run_name}_{file_number}.proc1'), lease_s: 60 },
        ],
      },
      join(dir, 'mesh.json'),
    );
    const admin = new Database({ url: server.url, database, credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    await admin.ensure();
    await pushDesigns(admin, config);
    await pushSecurity(admin, ['alpha', 'beta']);
    const copy = (i: number, sha = SHA) => ({
      site: 'beta',
      step: 'proc0',
      file: join(dir, 'beta', `lg23b002_00${i}`),
      sha256: sha,
      size_in_bytes: 10,
      verified_at: AT,
      account: 'beta-agent',
    });
    const done = (i: number, extra: Record<string, unknown> = {}): DaqDocument =>
      ({
        _id: `run_lg23b002_00${i}`,
        type: 'daqdocument',
        run_name: 'lg23b002',
        file_number: i,
        file: `/data/lg23b002_00${i}`,
        size_in_bytes: 10,
        checksum: { sha256: SHA },
        date_closed: AT,
        status: 'good',
        proc0: { ok: true, attempts: 1, file: join(dir, 'beta', `lg23b002_00${i}`) },
        proc1: { ok: true, attempts: 1, version: '1.0', file: `/out/v1.0/lg23b002_00${i}.proc1`, checksum: { sha256: 'c'.repeat(64) } },
        history: historyTo('good', STEPS, AT, 'beta/beta-1', null),
        ...extra,
      }) as DaqDocument;
    // Made with version 1.0, then reprocessed by an operator: its proc1 is superseded, to be made again.
    const reprocessed = transition(
      done(3),
      { type: 'reprocess', step: 'proc1', by: 'operator/op', why: 'proc1 2.0: new baseline', user: 'op' },
      new Date(AT),
      config,
    );
    assert.ok(reprocessed.ok);
    const docs = [
      done(0, { custody: [copy(0)] }),
      done(1, { custody: [copy(1, 'b'.repeat(64))] }),
      done(2, {
        custody: [copy(2)],
        purged: { at: AT, by: 'alpha/purge', user: 'alpha-agent', site: 'alpha', file: '/data/lg23b002_002', custody: [copy(2)] },
      }),
      reprocessed.doc,
    ];
    // Stored by the coordinator's relay (fixtures, not runs): the server still checks their shape.
    const coord = new Database({ url: server.url, database, credentials: { user: 'coord', password: COORD_PASSWORD } });
    assert.deepEqual(
      (await coord.bulk(docs)).filter((r) => r.error),
      [],
    );
    dashboard = await startAdminDashboard(config, database, ADMIN_PASSWORD);
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    await server?.close();
  });

  it('shows the purged files, the copies of the files still at the DAQ, the older records, and each document in words', async () => {
    browser = await launchChromium(join(dir, 'chromium-profile'));
    const page = await browser.newPage();
    await page.goto(dashboard.url);
    await page.waitForSelector('#custody:not([hidden]) [data-custody="purged"]', { timeout: 20_000 });
    assert.match((await page.textContent('[data-custody="purged"]')) ?? '', /On alpha \(the DAQ's server\): 1 file deleted by mesh purge \(10 bytes freed\)/);
    const row = async (copies: string) => ((await page.textContent(`[data-custody-copies="${copies}"]`)) ?? '').replace(/\s+/g, ' ');
    assert.match(await row('1'), /1 agreeing copy\s*1\s*10 bytes/);
    assert.match(await row('-1'), /a copy disagrees: never deleted\s*1\s*10 bytes/);
    assert.match(await row('0'), /no verified copy\s*1\s*10 bytes/);
    assert.match(
      (await page.textContent('[data-older-version="proc1"]')) ?? '',
      /proc1 is at version 2\.0: 3 done records on alpha made with an older one \(mesh reprocess proc1 counts them/,
    );

    const docText = async (id: string, part: string) => {
      await page.goto(`${dashboard.url}#doc=${id}`);
      // The card of this document, not the one shown before it (the page swaps them when the new one is read).
      await page.waitForFunction(
        ([wanted, selector]) =>
          document.querySelector('#doc-title')?.textContent === wanted && document.querySelector(`#document:not([hidden]) ${selector}`) !== null,
        [id, part],
        { timeout: 15_000 },
      );
      return ((await page.textContent('#document')) ?? '').replace(/\s+/g, ' ');
    };
    assert.match(await docText('run_lg23b002_000', '[data-custody="beta"]'), /Verified copies \(1\).*beta\s*proc0.*yes \(sha256 and size\)/);
    assert.match(await docText('run_lg23b002_001', '[data-custody="beta"]'), /no: sha256 bbbbbbbbbbbb…, 10 bytes/);
    assert.match(
      await docText('run_lg23b002_002', '[data-purged="alpha"]'),
      /Deleted from the DAQ buffer at alpha .* by alpha\/purge \(account alpha-agent\), relying on the copies at beta\./,
    );
    const superseded = await docText('run_lg23b002_003', '[data-superseded="proc1"]');
    assert.match(
      superseded,
      /Superseded records \(1, replaced by a reprocess\).*proc1\s*1\.0\s*\/out\/v1\.0\/lg23b002_003\.proc1.*operator\/op \(op\)\s*proc1 2\.0: new baseline/,
    );
    assert.match(superseded, /proc1 to be made again: proc1 2\.0: new baseline \(its records superseded\)/);
  });
});
