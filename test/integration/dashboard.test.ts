import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { Database } from '../../store/database.js';
import type { DaqDocument } from '../../core/document.js';
import { transition } from '../../core/state.js';
import { type DashboardProcess, PayloadRecorder, credentialLeaks, startDashboardProcess } from '../support/dashboard.js';
import { uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const USER = 'operator';
const PASSWORD = randomBytes(18).toString('base64url');
const ENV = { MESH_ALPHA_USER: USER, MESH_ALPHA_PASSWORD: PASSWORD, MESH_BETA_USER: USER, MESH_BETA_PASSWORD: PASSWORD };
const credentials = { user: USER, password: PASSWORD };
/** Fixtures are written as replication would carry them: by a mesh-coordinator account (the server admin may not write agents' claims). */
const FIXTURES = { user: 'fixtures', password: randomBytes(18).toString('base64url') };
const CSRF = { 'X-Mesh-Dashboard': '1' };
const JSON_POST = { 'Content-Type': 'application/json', ...CSRF };

interface Snapshot {
  generated: string;
  summary: { text: string; level: string };
  totals: Record<string, Record<string, number>>;
  totals_from: Record<string, string | null>;
  files: { count: number; differences: Array<{ text: string }> };
  servers: Array<{ site: string; reachable: boolean; doc_count: number; steps: Record<string, Record<string, number>>; url: string }>;
  runs: Array<{ daq_host: string; run: string; files: number; latest_file: number; latest?: { doc: string; status: string } }>;
  problems: { failed: Array<{ doc: string; step: string; reason: string; exit_code: number | null; stderr_tail?: string; server: string }> };
}

/** A closed document as ingest writes it (`daq_host` only when given). */
function closedDoc(run: string, file: number, daqHost?: string): DaqDocument {
  const at = new Date().toISOString();
  return {
    _id: `run_${run}_${String(file).padStart(3, '0')}`,
    type: 'daqdocument',
    run_name: run,
    file_number: file,
    file: `/daq/${run}/${run}_${String(file).padStart(3, '0')}`,
    size_in_bytes: 4096,
    date_closed: at,
    status: 'closed',
    ...(daqHost ? { daq_host: daqHost } : {}),
    history: [{ at, from: null, to: 'closed', by: 'alpha/ingest' }],
  };
}

/** Applies events through the real state machine, as an agent would. */
function through(config: MeshConfig, doc: DaqDocument, events: Array<Parameters<typeof transition>[1]>): DaqDocument {
  let current = doc;
  for (const event of events) {
    const next = transition(current, event, new Date(), config);
    if (!next.ok) throw next.error;
    current = next.doc;
  }
  return current;
}

describe('mesh dashboard: API and live pushes against two real servers', function () {
  this.timeout(120_000);
  let alpha: ServerProcess;
  let beta: ServerProcess;
  let dir: string;
  let config: MeshConfig;
  let configFile: string;
  let dbA: Database;
  let dbB: Database;
  let fixturesA: Database;
  let dashboard: DashboardProcess;
  let http: PayloadRecorder;
  const sockets: WebSocket[] = [];
  const lease = () => new Date(Date.now() + 600_000).toISOString();
  const claim = (step: string) => ({ type: 'claim' as const, step, mode: 'run' as const, site: 'alpha', agent: 'agent-1', host: 'test', lease_until: lease() });

  before(async () => {
    [alpha, beta] = await Promise.all([startServerProcess({ site: 'alpha', env: ENV }), startServerProcess({ site: 'beta', env: ENV })]);
    dir = await mkdtemp(join(tmpdir(), 'mesh-dashboard-'));
    const raw = {
      database: uniqueDatabase('dash'),
      doc_type: 'daqdocument',
      sites: {
        alpha: { server: alpha.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') },
        beta: { server: beta.url, reachable: true, long_running: true, log_dir: join(dir, 'logs') },
      },
      ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      // proc1 is beta's: its numbers come from beta's server, and a retry of it is written there.
      steps: ['proc0', 'proc1'].map((name) => ({
        name,
        site: name === 'proc0' ? 'alpha' : 'beta',
        run: [process.execPath, '-e', ''],
        out: join(dir, 'out', name, '{run_name}_{file_number}'),
        timeout_s: 30,
        max_attempts: 1,
        lease_s: 60,
      })),
      agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
    };
    configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    config = parseMeshConfig(raw, configFile);
    dbA = new Database({ url: alpha.url, database: config.database, credentials });
    dbB = new Database({ url: beta.url, database: config.database, credentials });
    for (const db of [dbA, dbB]) {
      await db.ensure();
      await pushDesign(db, designDocument(config));
      await pushSecurity(db, Object.keys(config.sites));
      await new Database({ url: db.url, database: '_users', credentials }).put({
        _id: `org.couchdb.user:${FIXTURES.user}`,
        type: 'user',
        name: FIXTURES.user,
        roles: ['mesh-coordinator'],
        password: FIXTURES.password,
      });
    }
    const writerA = new Database({ url: alpha.url, database: config.database, credentials: FIXTURES });
    const writerB = new Database({ url: beta.url, database: config.database, credentials: FIXTURES });
    fixturesA = writerA;

    // alpha: run lg23b001 from daq1 (files 0–11), run lg23b002 from an older ingest without daq_host (files 0–7).
    const docs = [...Array.from({ length: 12 }, (_, i) => closedDoc('lg23b001', i, 'daq1')), ...Array.from({ length: 8 }, (_, i) => closedDoc('lg23b002', i))];
    const done = (doc: DaqDocument) =>
      through(config, doc, [claim('proc0'), { type: 'succeed', step: 'proc0', agent: 'agent-1', result: { exit_code: 0, duration_s: 1 } }]);
    const failed = (doc: DaqDocument) =>
      through(config, doc, [
        claim('proc0'),
        {
          type: 'fail',
          step: 'proc0',
          agent: 'agent-1',
          reason: 'exit status 4',
          result: { exit_code: 4, duration_s: 1, stderr_tail: 'disk on fire' },
          retry_after: new Date().toISOString(),
        },
      ]);
    const onAlpha = docs.map((doc, i) => (i < 3 ? done(doc) : i < 5 ? failed(doc) : i === 5 ? through(config, doc, [claim('proc0')]) : doc));
    assert.ok((await writerA.bulk(onAlpha)).every((r) => !r.error));
    // beta: the first 10 documents only, all closed.
    assert.ok((await writerB.bulk(docs.slice(0, 10))).every((r) => !r.error));

    dashboard = await startDashboardProcess(configFile, ENV);
    http = new PayloadRecorder(dashboard.url);
  });

  after(async () => {
    for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.terminate();
    await dashboard?.stop();
    if (dashboard) assert.deepEqual(credentialLeaks([dashboard.output()], USER, PASSWORD), [], 'the dashboard logged a credential');
    await Promise.all([alpha?.stop(), beta?.stop()]);
    await stopAllServerProcesses();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the page, and a snapshot whose numbers match the documents on each server', async () => {
    const page = await http.fetch('/');
    assert.equal(page.status, 200);
    assert.match(page.text, /<script type="module" src="\/app.js">/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal((await http.fetch('/app.js')).status, 200);
    assert.equal((await http.fetch('/..%2Fpackage.json')).status, 404);

    const { status, body } = await http.fetch('/api/snapshot');
    assert.equal(status, 200);
    const snap = body as unknown as Snapshot;
    assert.deepEqual(
      snap.servers.map((s) => [s.site, s.reachable, s.doc_count]),
      [
        ['alpha', true, 20],
        ['beta', true, 10],
      ],
    );
    assert.deepEqual(snap.servers.find((s) => s.site === 'alpha')?.steps.proc0, { done: 3, ready: 14, queued: 0, in_progress: 1, failed: 2 });
    assert.deepEqual(snap.servers.find((s) => s.site === 'beta')?.steps.proc0, { done: 0, ready: 10, queued: 0, in_progress: 0, failed: 0 });
    // Each file once: a step's numbers are those of the server its agents claim on, not alpha's and beta's added up.
    assert.deepEqual(snap.totals.proc0, { done: 3, ready: 14, queued: 0, in_progress: 1, failed: 2 });
    // beta has not heard of the three proc0 results yet: nothing is ready for proc1 there.
    assert.deepEqual(snap.totals.proc1, { done: 0, ready: 0, queued: 0, in_progress: 0, failed: 0 });
    assert.deepEqual(snap.totals_from, { proc0: 'alpha', proc1: 'beta' });
    // beta holds 10 of the 20 files, and 6 of its 10 lag alpha's: at least 10 files behind.
    assert.deepEqual(
      snap.files.differences.map((d) => d.text),
      ['beta is behind on 10 files (proc0; 10 files not there yet)'],
    );
    assert.equal(snap.files.count, 20);
    assert.deepEqual(
      snap.runs.map((r) => [r.daq_host, r.run, r.files, r.latest_file, r.latest?.doc, r.latest?.status]),
      [
        ['daq1', 'lg23b001', 12, 11, 'run_lg23b001_011', 'closed'],
        ['unknown', 'lg23b002', 8, 7, 'run_lg23b002_007', 'closed'],
      ],
    );
    assert.deepEqual(snap.problems.failed.map((f) => [f.server, f.doc, f.step, f.reason, f.exit_code, f.stderr_tail]).sort(), [
      ['alpha', 'run_lg23b001_003', 'proc0', 'exit status 4', 4, 'disk on fire'],
      ['alpha', 'run_lg23b001_004', 'proc0', 'exit status 4', 4, 'disk on fire'],
    ]);
    for (const server of snap.servers) assert.doesNotMatch(server.url, /@/);
  });

  it('shows one document with its revisions on each server, its neighbours, and finds files by name and run', async () => {
    const { body } = await http.fetch('/api/doc?id=run_lg23b001_003');
    const view = body as {
      doc: DaqDocument;
      servers: Array<{ site: string; found: boolean; rev?: string; revs_info?: unknown[] }>;
      nav: Record<string, string | undefined>;
    };
    assert.equal(view.doc.status, 'proc0 failed');
    assert.deepEqual(
      view.servers.map((s) => [s.site, s.found, s.rev?.split('-')[0]]),
      [
        ['alpha', true, '1'],
        ['beta', true, '1'],
      ],
    );
    assert.notEqual(view.servers[0].rev, view.servers[1].rev, 'alpha and beta hold different revisions');
    assert.deepEqual(view.nav, { prev_file: 'run_lg23b001_002', next_file: 'run_lg23b001_004', next_run: 'run_lg23b002_000' });
    const last = (await http.fetch('/api/doc?id=run_lg23b001_011')).body as { nav: Record<string, string> };
    assert.equal(last.nav.next_file, 'run_lg23b002_000');
    const first = (await http.fetch('/api/doc?id=run_lg23b002_003')).body as { nav: Record<string, string> };
    assert.equal(first.nav.prev_run, 'run_lg23b001_000');

    const search = (await http.fetch('/api/search?q=lg23b002_00')).body as { results: Array<{ doc: string }> };
    assert.deepEqual(
      search.results.map((r) => r.doc),
      Array.from({ length: 8 }, (_, i) => `run_lg23b002_00${i}`),
    );
    assert.deepEqual((await http.fetch('/api/run?run=lg23b002')).body, { run: 'lg23b002', doc: 'run_lg23b002_000' });
    assert.equal((await http.fetch('/api/doc?id=_design/mesh')).status, 400);
  });

  it('pushes a fresh snapshot over the WebSocket on a change, before the periodic refresh', async () => {
    const received: Array<{ snap: Snapshot; at: number }> = [];
    const ws = http.socket((message, at) => received.push({ snap: message.snapshot as unknown as Snapshot, at }));
    sockets.push(ws);
    await waitFor('the first snapshot', () => received.length > 0, 10_000);
    assert.equal(received[0].snap.servers[0].doc_count, 20);
    // Write just after a snapshot arrived, as a change usually comes while the page is idle.
    const count = received.length;
    await waitFor('a periodic snapshot', () => received.length > count, 10_000, 10);
    const written = Date.now();
    await fixturesA.put(closedDoc('lg23b003', 0, 'daq2'));
    const pushed = await waitFor('a snapshot with the new document', () => received.find((m) => m.snap.servers[0].doc_count === 21), 5_000, 20);
    // Pushed by the change, not by the periodic refresh (every 5 s, and one has just come): how fast is the bench's business.
    assert.ok(pushed.at - written < 2500, `pushed ${pushed.at - written} ms after the write`);
    assert.deepEqual(
      pushed.snap.runs.map((r) => `${r.daq_host}/${r.run}:${r.latest_file}`),
      ['daq1/lg23b001:11', 'daq2/lg23b003:0', 'unknown/lg23b002:7'],
    );
  });

  it('refuses a WebSocket from another origin', async () => {
    const ws = http.socket(() => {}, { Origin: 'http://evil.example' });
    sockets.push(ws);
    const [status] = await new Promise<[number]>((resolve) => ws.once('unexpected-response', (_req, res) => resolve([res.statusCode ?? 0])));
    assert.equal(status, 403);
  });

  it('is read-only without a login, and a logged-in operator can retry a failed step', async () => {
    const retry = (headers: Record<string, string>) => http.fetch('/api/retry', { method: 'POST', headers, body: JSON.stringify({ doc: 'run_lg23b001_003' }) });
    const anonymous = await retry(JSON_POST);
    assert.equal(anonymous.status, 403);
    assert.match(String(anonymous.body.reason), /read-only: log in as an operator/);

    const noSite = await http.fetch('/api/login', { method: 'POST', headers: JSON_POST, body: JSON.stringify(credentials) });
    assert.equal(noSite.status, 400, 'with two servers the login must say which one the password is for');
    assert.match(String(noSite.body.reason), /one of alpha, beta/);
    const wrong = await http.fetch('/api/login', {
      method: 'POST',
      headers: JSON_POST,
      body: JSON.stringify({ user: USER, password: 'not-the-password', site: 'alpha' }),
    });
    assert.equal(wrong.status, 403);
    assert.match(String(wrong.body.reason), /^not accepted by alpha: /);
    assert.equal(wrong.headers.get('set-cookie'), null);
    const noHeader = await http.fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...credentials, site: 'alpha' }),
    });
    assert.equal(noHeader.status, 403, 'a login without the CSRF header is refused');

    const login = await http.fetch('/api/login', { method: 'POST', headers: JSON_POST, body: JSON.stringify({ ...credentials, site: 'alpha' }) });
    assert.equal(login.status, 200, login.text);
    assert.deepEqual(login.body.servers, ['alpha'], 'the password was checked by the server it was typed for only');
    const cookie = login.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^mesh_session=[A-Za-z0-9_-]{40,}; HttpOnly; SameSite=Strict; Path=\//);
    const session = cookie.split(';')[0];

    const forged = await retry({ 'Content-Type': 'application/json', Cookie: session });
    assert.equal(forged.status, 403, 'the session cookie alone (a cross-site request) is not enough');
    assert.match(String(forged.body.reason), /x-mesh-dashboard/);
    assert.equal((await dbA.get<DaqDocument>('run_lg23b001_003'))?.status, 'proc0 failed');

    const ok = await retry({ ...JSON_POST, Cookie: session });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual([ok.body.step, ok.body.status, ok.body.server], ['proc0', 'closed', 'alpha']);
    const doc = await dbA.get<DaqDocument>('run_lg23b001_003');
    assert.equal(doc?.status, 'closed');
    assert.equal(doc?.history.at(-1)?.by, `operator/${USER} (dashboard)`);
    assert.equal((await retry({ ...JSON_POST, Cookie: session })).status, 400, 'nothing left to retry');

    assert.equal((await http.fetch('/api/session', { headers: { Cookie: session } })).body.user, USER);
    await http.fetch('/api/logout', { method: 'POST', headers: { ...JSON_POST, Cookie: session }, body: '{}' });
    assert.equal((await retry({ ...JSON_POST, Cookie: session })).status, 403, 'the session ended');
  });

  it('serves /metrics', async () => {
    const metrics = await http.fetch('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
  });

  it('keeps answering with one server stopped, showing it unreachable', async () => {
    await beta.stop();
    const snap = await waitFor(
      'a snapshot with beta unreachable',
      async () => {
        const { body } = await http.fetch('/api/snapshot');
        const s = body as unknown as Snapshot;
        return s.servers?.find((x) => x.site === 'beta')?.reachable === false ? s : undefined;
      },
      20_000,
      200,
    );
    assert.equal(snap.servers.find((s) => s.site === 'alpha')?.reachable, true);
    assert.equal(snap.totals.proc0.done, 3);
    // proc1's numbers now come from alpha's copy: not halved, not gone.
    assert.deepEqual([snap.totals_from.proc1, snap.totals.proc1.ready], ['alpha', 3]);
    assert.match(snap.summary.text, /beta unreachable/);

    // Causes named right: beta is down, which is not "your login was not accepted".
    const atBeta = await http.fetch('/api/login', { method: 'POST', headers: JSON_POST, body: JSON.stringify({ ...credentials, site: 'beta' }) });
    assert.equal(atBeta.status, 502, atBeta.text);
    assert.match(String(atBeta.body.reason), /^the server of beta is unreachable .*: your password was not checked; log in again when it is back$/);
    const atAlpha = await http.fetch('/api/login', { method: 'POST', headers: JSON_POST, body: JSON.stringify({ ...credentials, site: 'alpha' }) });
    const session = (atAlpha.headers.get('set-cookie') ?? '').split(';')[0];
    const retryThere = await http.fetch('/api/retry', {
      method: 'POST',
      headers: { ...JSON_POST, Cookie: session },
      body: JSON.stringify({ doc: 'run_lg23b001_004', step: 'proc1' }),
    });
    assert.equal(retryThere.status, 502, retryThere.text);
    assert.match(String(retryThere.body.reason), /^the server of beta, where proc1 is retried, is unreachable \(.*\): retry when it is back$/);
    const view = (await http.fetch('/api/doc?id=run_lg23b001_000')).body as { doc: DaqDocument; servers: Array<{ site: string; reachable: boolean }> };
    assert.equal(view.doc.status, 'good');
    assert.deepEqual(
      view.servers.map((s) => [s.site, s.reachable]),
      [
        ['alpha', true],
        ['beta', false],
      ],
    );
    assert.equal((await http.fetch('/')).status, 200);
  });

  it('never sent a credential to the browser', () => {
    assert.ok(http.payloads.length > 20, `${http.payloads.length} payloads recorded`);
    assert.deepEqual(http.leaks(USER, PASSWORD), []);
  });
});
