import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { credentialLeaks } from '../support/dashboard.js';
import { waitFor } from '../support/mesh.js';
import { meshMain, repoRoot } from '../support/server-process.js';
import { assertChromium, launchChromium } from '../support/browser.js';

const ARTIFACTS = join(repoRoot, 'artifacts', 'dashboard');
const USER = 'shift';
const PASSWORD = randomBytes(18).toString('base64url');
/** The third sample file; its proc1 input is `<lyon>/raw/lg23b000_002.raw`. */
const FAILING_DOC = 'run_lg23b000_002';
const FAULT = 'lg23b000_002.raw.fail';
/**
 * Files close this far apart, so work is still arriving when the page is up even on a loaded
 * machine (all at once, every proc0 could be done before the browser has started).
 */
const ARRIVAL_MS = 6_000;
/** A phone's screen, in CSS pixels. */
const PHONE = { width: 390, height: 844 };

describe('mesh dashboard in a browser during mesh simulate', function () {
  this.timeout(240_000);
  let work: string;
  let simulate: ChildProcess | undefined;
  let browser: BrowserContext | undefined;
  let stderr = '';

  before(async () => {
    // setup installs Debian's chromium; a machine without it must fail this test, not skip it.
    assertChromium();
    work = await mkdtemp(join(tmpdir(), 'mesh-dashboard-browser-'));
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    if (simulate && simulate.exitCode === null && simulate.signalCode === null) {
      const exited = once(simulate, 'exit');
      simulate.kill('SIGTERM');
      const timer = setTimeout(() => simulate?.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('shows the counts moving without a reload, each file once; fits a phone; an operator retries the failed file; a stale page says so', async () => {
    const faults = join(work, 'faults');
    await mkdir(faults);
    await writeFile(join(faults, FAULT), '');
    simulate = spawn(
      process.execPath,
      [
        meshMain,
        'simulate',
        '--files',
        '6',
        '--arrival-ms',
        String(ARRIVAL_MS),
        '--no-ssh',
        '--no-slurm',
        '--max-attempts',
        '1',
        '--wait-on-failure',
        '--stay',
        '--dashboard-port',
        '0',
      ],
      {
        cwd: repoRoot,
        env: {
          ...process.env,
          MESH_LOG_LEVEL: 'info',
          MESH_FAULT_DIR: faults,
          MESH_MODANE_USER: USER,
          MESH_MODANE_PASSWORD: PASSWORD,
          MESH_KIT_USER: USER,
          MESH_KIT_PASSWORD: PASSWORD,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    simulate.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    simulate.stdout?.resume();
    const exited = once(simulate, 'exit');
    const url = await waitFor(
      'the status page URL in the simulation output',
      () => /status page: (http:\/\/[^\s"]+)/.exec(stderr)?.[1] ?? (simulate?.exitCode !== null ? Promise.reject(new Error(stderr.slice(-2000))) : undefined),
      60_000,
      100,
    );

    // A fresh profile in the test's own folder.
    browser = await launchChromium(join(work, 'chromium-profile'));
    const page = await browser.newPage();
    const received: string[] = [];
    page.on('websocket', (ws) => ws.on('framereceived', (frame) => received.push(String(frame.payload))));
    page.on(
      'response',
      (response) =>
        void response.text().then(
          (text) => received.push(text),
          () => {},
        ),
    );
    // A reload would start a new document, without this marker (hash changes keep it).
    await page.goto(url);
    await page.evaluate(() => Object.assign(window, { loadedOnce: true }));
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 20_000 });
    await page.waitForSelector('tr.total[data-step="proc0"]', { timeout: 20_000 });
    // Every step's summed "done" count, as the page shows it.
    const first = await page.evaluate(() => [...document.querySelectorAll('tr.total td[data-count="done"]')].map((cell) => cell.textContent).join(' '));

    // Counts move as the simulation runs, pushed over the WebSocket.
    await page.waitForFunction(
      (before) => [...document.querySelectorAll('tr.total td[data-count="done"]')].map((cell) => cell.textContent).join(' ') !== before,
      first,
      { timeout: 90_000 },
    );
    // Two servers hold the failed file: one row, naming both (not one row per server).
    const failedRow = await page.waitForSelector(`[data-failed="${FAILING_DOC}"][data-servers~="kit"][data-servers~="modane"]`, { timeout: 90_000 });
    assert.equal(await page.locator(`[data-failed="${FAILING_DOC}"]`).count(), 1, 'the failed file is listed once');
    assert.match((await failedRow.textContent()) ?? '', /proc1.*exited with 4/);
    // The worst state in the header and in the tab's title, so a tab in the background says it.
    await page.waitForFunction(() => /^1 failed( · |$)/.test(document.querySelector('#summary')?.textContent ?? ''), undefined, { timeout: 20_000 });
    assert.match(await page.title(), /^1 failed/);
    await page.screenshot({ path: join(ARTIFACTS, '1-overview-with-failure.png'), fullPage: true });

    // A 390 px phone: nothing scrolls sideways, the failed count is on the first screen.
    const phone = await browser.newPage();
    await phone.setViewportSize(PHONE);
    await phone.goto(url);
    await phone.waitForSelector(`[data-failed="${FAILING_DOC}"]`, { timeout: 20_000 });
    const fits = () => phone.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    const overview = await fits();
    assert.ok(overview.scroll <= overview.inner, `the overview is ${overview.scroll} px wide at ${overview.inner} px`);
    for (const selector of ['#summary', 'tr.total[data-step="proc1"] td[data-count="failed"]']) {
      // Each push redraws the tables: an element caught while it is replaced has no box, so measure the drawn one (at most 2 s).
      let box = await phone.locator(selector).boundingBox();
      for (let tries = 0; box === null && tries < 20; tries++) {
        await phone.waitForTimeout(100);
        box = await phone.locator(selector).boundingBox();
      }
      assert.ok(box && box.y + box.height <= PHONE.height, `${selector} is not on the first screen (${JSON.stringify(box)})`);
    }
    assert.equal(await phone.textContent('tr.total[data-step="proc1"] td[data-count="failed"]'), '1');
    await phone.screenshot({ path: join(ARTIFACTS, 'phone-1-first-screen.png') });
    await phone.screenshot({ path: join(ARTIFACTS, 'phone-2-overview.png'), fullPage: true });
    await phone.goto(`${url}#doc=${FAILING_DOC}`);
    await phone.waitForSelector('[data-record="proc1"].failed', { timeout: 20_000 });
    const card = await fits();
    assert.ok(card.scroll <= card.inner, `the document card is ${card.scroll} px wide at ${card.inner} px`);
    await phone.screenshot({ path: join(ARTIFACTS, 'phone-3-failed-document.png'), fullPage: true });
    await phone.close();

    await page.click(`[data-failed="${FAILING_DOC}"] a[data-doc="${FAILING_DOC}"]`);
    await page.waitForSelector('#document:not([hidden])');
    assert.equal(await page.textContent('#doc-status'), 'proc1 failed');
    assert.equal(await page.isDisabled('#retry'), true, 'read-only before the login');
    assert.match((await page.textContent('#retry-message')) ?? '', /read-only/);
    // The card in words: how the run ended, not field names or raw JSON.
    const record = (await page.textContent('[data-record="proc1"]')) ?? '';
    assert.match(record, /failing on purpose/);
    assert.match(record, /failed for good.*exited with status 4/s);
    assert.doesNotMatch((await page.textContent('#doc-body')) ?? '', /exit_code|signal\s*null|previous_failure|"ok"/);
    assert.match((await page.textContent('[data-history="failed"]')) ?? '', /proc1 failed for good/);
    await page.screenshot({ path: join(ARTIFACTS, '2-failed-document.png'), fullPage: true });

    await page.fill('#login-user', USER);
    await page.fill('#login-password', PASSWORD);
    // proc1 is lyon's step, whose documents live on kit's server: the operator logs in there.
    await page.selectOption('#login-site', 'kit');
    await page.click('#login-form button[type="submit"]');
    await page.waitForSelector('#login-state:not([hidden])', { timeout: 10_000 });
    await page.waitForSelector('#retry:not([disabled])');
    // The failed row in Problems has its own Retry, enabled for the operator too.
    await page.waitForSelector(`[data-failed="${FAILING_DOC}"] [data-retry="${FAILING_DOC}:proc1"]:not([disabled])`);

    await rm(join(faults, FAULT));
    await page.click('#retry');
    // The confirmation, or already none: it goes once the step has moved on, which a quick agent
    // may do before the page is looked at. A refused retry leaves its reason there instead.
    await page
      .waitForFunction(
        () => {
          const message = document.querySelector('#retry-message');
          return message === null || /ready again/.test(message.textContent ?? '');
        },
        undefined,
        { timeout: 30_000 },
      )
      .catch(async (error: unknown) => {
        throw new Error(`${String(error)}\nthe page says: ${await page.textContent('#retry-message', { timeout: 1000 }).catch(() => '(nothing)')}`);
      });
    try {
      // Every step done: "complete", not "good" (which is one step done, waiting for the next).
      await page.waitForFunction(
        () => document.querySelector('#doc-status')?.textContent === 'complete' && document.querySelector('[data-record="proc2"].ok') !== null,
        undefined,
        { timeout: 90_000 },
      );
    } catch (error) {
      await page.screenshot({ path: join(ARTIFACTS, 'failure.png'), fullPage: true });
      throw new Error(`${String(error)}\nsimulate:\n${stderr.slice(-4000)}`);
    }
    assert.match((await page.textContent('#doc-body')) ?? '', /operator\/shift \(dashboard\)/);
    assert.match((await page.textContent('#doc-state')) ?? '', /^complete/);
    // The retry's confirmation went once the step moved on.
    assert.equal(await page.locator('#retry-message').count(), 0, 'the retry confirmation outlived the retry');
    await page.screenshot({ path: join(ARTIFACTS, '3-retried-and-complete.png'), fullPage: true });
    assert.equal(await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce), true, 'the page was never reloaded');

    // With the failure retried, the simulation completes every file everywhere; it stays up (--stay) until stopped.
    await waitFor('the simulation to finish every file', () => /all 6 files done and identical/.test(stderr), 120_000, 200);
    // Two servers, six files: every count is six, not twelve, and nothing is said to differ.
    await page.click('#doc-close');
    await page
      .waitForFunction(
        () =>
          [...document.querySelectorAll('tr.total td[data-count="done"]')].map((cell) => cell.textContent).join(' ') === '6 6 6' &&
          document.querySelectorAll('tr.sub, [data-difference]').length === 0 &&
          /^all well · 6 files/.test(document.querySelector('#summary')?.textContent ?? ''),
        undefined,
        { timeout: 30_000 },
      )
      .catch(async (error: unknown) => {
        throw new Error(
          `${String(error)}\nthe steps: ${await page.textContent('#steps')} ${await page.textContent('#steps-note')}; summary: ${await page.textContent('#summary')}`,
        );
      });
    assert.equal(await page.textContent('tr[data-run="lg23b000"] td[data-label="files"]'), '6');
    await page.screenshot({ path: join(ARTIFACTS, '4-complete-each-file-once.png'), fullPage: true });

    simulate.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0, stderr.slice(-3000));
    await page.waitForSelector('#connection[data-state="offline"]', { timeout: 10_000 });
    // A page whose live connection is gone greys its data and says how old it is, counting up.
    const stale = await page.waitForSelector('body.stale #stale:not([hidden])', { timeout: 10_000 });
    const age = async () => Number(/^data (\d+) s old: the live connection is gone/.exec((await stale.textContent()) ?? '')?.[1]);
    const firstAge = await age();
    assert.ok(Number.isInteger(firstAge), `the banner says ${await stale.textContent()}`);
    await page.waitForFunction((before) => Number(/^data (\d+) s old/.exec(document.querySelector('#stale')?.textContent ?? '')?.[1]) > before, firstAge, {
      timeout: 5_000,
    });
    assert.match(await page.evaluate(() => getComputedStyle(document.querySelector('main') as Element).filter), /grayscale/);
    assert.match(await page.title(), /^data \d+ s old · /);
    await page.screenshot({ path: join(ARTIFACTS, '5-stale-page.png'), fullPage: true });
    assert.deepEqual(credentialLeaks(received, USER, PASSWORD), [], 'a credential reached the browser');
  });
});
