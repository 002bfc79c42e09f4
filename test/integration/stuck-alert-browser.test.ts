/**
 * Issue 13 §1, "Done when": the stuck chain in a browser. The simulated topology with server
 * credentials and lyon reached over a real sshd, but lyon's password file holds a wrong password:
 * every run of lyon's agent ends at once (401, then the account locked), proc1's documents stay
 * ready and nothing claims them. The status page (Chromium) shows the stalled step within
 * `alerts.stalled_s` (set low here) plus a round and a page refresh, and the failing runs with
 * their reason, each with what to do; `mesh status` and the coordinator's log say the same.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { ingestDirectory } from '../../agents/ingest.js';
import { readySince } from '../../coordinator/alert-evidence.js';
import { writeSampleFiles } from '../../cli/simulate.js';
import { type Topology, logFile, startTopology } from '../../cli/topology.js';
import { freePort } from '../../cli/local/ports.js';
import { createLogger } from '../../core/log.js';
import { Database } from '../../store/database.js';
import * as files from '../../store/files.js';
import { credentialLeaks } from '../support/dashboard.js';
import { waitFor } from '../support/mesh.js';
import { repoRoot, runMesh } from '../support/server-process.js';
import { assertChromium, launchChromium } from '../support/browser.js';

const ARTIFACTS = join(repoRoot, 'artifacts', 'stuck-alert');
const USER = 'shift';
const PASSWORD = randomBytes(18).toString('base64url');
const STALLED_S = 10;
/** The coordinator's round (the simulation's interval_s) and the page's periodic rebuild (dashboard/live.ts). */
const ROUND_S = 1;
const REFRESH_S = 5;
/** A loaded machine: the browser's own work and a snapshot that takes a while to build. */
const SLACK_S = 10;

describe('the status page flags a stuck chain (lyon cannot log in)', function () {
  this.timeout(240_000);
  let work: string;
  let topology: Topology | undefined;
  let browser: BrowserContext | undefined;

  before(async () => {
    assertChromium();
    work = await mkdtemp(join(tmpdir(), 'mesh-stuck-browser-'));
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await topology?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('shows step_stalled within stalled_s + a round, and site_failing with the reason, on the page and in mesh status', async () => {
    const wrong = join(work, 'wrong.password');
    await writeFile(wrong, 'not-the-password\n', { mode: 0o600 });
    const env = {
      ...process.env,
      MESH_LOG_LEVEL: 'warn',
      MESH_MODANE_USER: USER,
      MESH_MODANE_PASSWORD: PASSWORD,
      MESH_KIT_USER: USER,
      MESH_KIT_PASSWORD: PASSWORD,
    };
    topology = await startTopology({
      work,
      env,
      logFile: logFile(work),
      logger: createLogger({ level: 'warn' }),
      ssh: true,
      slurm: false,
      nats: false,
      // Lyon's agent account with a wrong password: every lyon run is refused by kit's server.
      lyonEnv: { MESH_KIT_PASSWORD_FILE: wrong },
      adjust: (raw) => Object.assign(raw, { alerts: { stalled_s: STALLED_S } }),
    });
    assert.ok(topology.sshd, 'this test needs the private sshd (root and openssh-server)');
    const { config } = topology;
    // The test's own process has no credentials in its environment (topology.open would read them there).
    const admin = { user: USER, password: PASSWORD };
    const kit = new Database({ url: config.sites.kit.server, database: config.database, credentials: admin });
    const modane = new Database({ url: config.sites.modane.server, database: config.database, credentials: admin });
    const port = await freePort();
    topology.startCoordinator({ dashboardPort: port });
    await waitFor(
      'the design documents on both servers',
      async () => ((await Promise.all([modane, kit].map((db) => db.get('_design/mesh').catch(() => undefined)))).every(Boolean) ? true : undefined),
      120_000,
      200,
    );
    const url = `http://127.0.0.1:${port}/`;
    await waitFor(
      'the status page',
      () =>
        fetch(url).then(
          (r) => r.ok || undefined,
          () => undefined,
        ),
      60_000,
      200,
    );

    browser = await launchChromium(join(work, 'chromium-profile'));
    const page = await browser.newPage();
    const received: string[] = [];
    page.on('websocket', (ws) => ws.on('framereceived', (frame) => received.push(String(frame.payload))));
    await page.goto(url);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });

    topology.startModaneAgent();
    const storage = config.sites.modane.storage as string;
    await mkdir(storage, { recursive: true });
    await writeSampleFiles(storage, 3);
    await ingestDirectory(storage, {
      db: topology.ingestDb(),
      docType: config.doc_type,
      ingest: config.ingest,
      stepNames: config.steps.map((s) => s.name),
      site: 'modane',
    });

    // proc0 (modane, over SFTP) works: from the moment a document is ready for proc1 on lyon's server, the clock runs.
    const firstReady = await waitFor(
      'a document ready for proc1 on kit',
      async () => (await files.ready(kit, 'proc1', { until: new Date().toISOString(), limit: 1 }))[0],
      120_000,
      100,
    );
    // Since proc0's success was recorded (at modane, on this machine's clock).
    const readyAt = Date.parse(readySince(firstReady, 'proc1') as string);
    const stalled = await page
      .waitForSelector('#alerts li[data-alert="step_stalled"]', { timeout: (STALLED_S + ROUND_S + REFRESH_S + SLACK_S) * 1000 })
      .catch(async (error: unknown) => {
        await page.screenshot({ path: join(ARTIFACTS, 'failure.png'), fullPage: true });
        throw new Error(`${String(error)}\nprocesses.log:\n${readFileSync(join(work, 'processes.log'), 'utf8').slice(-4000)}`);
      });
    const seconds = (Date.now() - readyAt) / 1000;
    console.log(`      step_stalled on the page ${seconds.toFixed(1)} s after proc1 became ready (stalled_s ${STALLED_S})`);
    assert.ok(seconds >= STALLED_S, `shown after ${seconds} s, before stalled_s (${STALLED_S} s)`);
    const stalledText = (await stalled.textContent()) ?? '';
    assert.match(stalledText, /proc1: \d documents? ready and none claimed for \d+s \(site lyon runs it; never done yet\)/);
    assert.match(stalledText, /What to do: Check that the runs of lyon's agent/);

    // Lyon's runs keep failing (the trigger runs one every 2 s): the reason is the server's refusal.
    const failing = await page.waitForSelector('#alerts li[data-alert="site_failing"]', { timeout: 60_000 });
    const failingText = (await failing.textContent()) ?? '';
    assert.match(failingText, /lyon: \d+ runs failed in \d+[sm].*: .*(not authorised|401|locked)/i);
    assert.match(failingText, /What to do: The runs of lyon's agent end before doing any work\. The server refuses lyon's login/);
    await page.screenshot({ path: join(ARTIFACTS, 'stuck-chain-alerts.png'), fullPage: true });

    // mesh status says the same, with what to do.
    const status = await runMesh(['--config', topology.configFile, 'status'], env, 60_000);
    assert.match(status.stdout, /step_stalled since \S+: proc1: \d documents? ready and none claimed[^\n]*\n {4}what to do: /);
    assert.match(status.stdout, /site_failing since \S+: lyon: \d+ runs failed[^\n]*\n {4}what to do: /);
    // And the coordinator logged each once.
    const log = readFileSync(join(work, 'processes.log'), 'utf8');
    assert.match(log, /"alert":"step_stalled".*"msg":"ALERT proc1: /);
    assert.match(log, /"alert":"site_failing".*"msg":"ALERT lyon: \d+ runs failed/);
    assert.deepEqual(credentialLeaks(received, USER, PASSWORD), [], 'a credential reached the browser');
  });
});
