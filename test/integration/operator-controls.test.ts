/**
 * The operators' controls end to end: real `mesh agent` processes running the noop step program
 * against an embedded server process, driven by the real `mesh pause|resume|drain|undrain` and
 * `mesh retry --failed` commands. A paused step is not claimed while another step is, and
 * resumes; a drained site takes nothing while another site works; `mesh status` names who paused
 * what and why; the bulk retry's dry run changes nothing and its real run retries the matching ones.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import { historyTo } from '../../core/provenance.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import * as files from '../../store/files.js';
import { readHeartbeats } from '../../store/heartbeats.js';
import { testFolder } from '../support/folders.js';
import { NOOP, runMesh, serverForSuite, spawnMeshProcess, stopProcess, uniqueDatabase, waitFor } from '../support/mesh.js';
import type { ServerProcess } from '../support/server-process.js';

interface Mesh {
  dir: string;
  configFile: string;
  config: MeshConfig;
  db: Database;
  runLog: string;
}

describe('operator controls with real agent processes and the mesh commands', function () {
  this.timeout(120_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  /** Two sites on one server: alpha runs proc0, beta proc1, both the noop program that logs each run. */
  async function twoSiteMesh(): Promise<Mesh> {
    const dir = testFolder('mesh-controls-');
    const runLog = join(dir, 'runs.log');
    const site = (mayRun: string[]) => ({ server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs'), may_run: mayRun });
    const raw = {
      database: uniqueDatabase('controls'),
      doc_type: 'daqdocument',
      sites: { alpha: site(['proc0']), beta: site(['proc1']) },
      ingest: { site: 'alpha', quiet_s: 600 },
      coordinator: { site: 'alpha' },
      steps: ['proc0', 'proc1'].map((name, i) => ({
        name,
        site: i === 0 ? 'alpha' : 'beta',
        run: [process.execPath, NOOP, '--log', runLog, '--doc', '{doc_id}', '--step', '{step}', '--touch', '{out}'],
        out: join(dir, 'out', name, '{run_name}_{file_number}'),
        timeout_s: 30,
        max_attempts: 3,
        lease_s: 10,
      })),
      agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
      // An idle agent's heartbeat every heartbeat_s (agent_silent_s / 3): the test counts them as time passing at the agent.
      alerts: { agent_silent_s: 3 },
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    const db = new Database({ url: server.url, database: config.database });
    await db.ensure();
    await pushDesigns(db, config);
    return { dir, configFile, config, db, runLog };
  }

  async function seedClosed(mesh: Mesh, count: number): Promise<void> {
    const docs = Array.from({ length: count }, (_, i) => ({
      _id: `run_lg23b002_${String(i).padStart(3, '0')}`,
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: i,
      file: join(mesh.dir, `lg23b002_${i}`),
      size_in_bytes: 0,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: historyTo('closed', []),
    }));
    await mesh.db.bulk(docs);
  }

  const agent = (mesh: Mesh, site: string) =>
    spawnMeshProcess(['--config', mesh.configFile, 'agent', '--site', site, '--name', `${site}-1`], { logFile: join(mesh.dir, `${site}.log`) });
  const mesh = (m: Mesh, ...args: string[]) => runMesh(['--config', m.configFile, ...args]);
  const runsOf = async (m: Mesh, step: string) =>
    (await readFile(m.runLog, 'utf8').catch(() => '')).split('\n').filter((line) => line.endsWith(` ${step}`)).length;

  /** Waits for two more heartbeats of `agent` (each about 1 s apart, as its sweeps are: it swept meanwhile). */
  async function twoBeatsOf(m: Mesh, name: string): Promise<void> {
    const seen = async () => (await readHeartbeats(m.db)).find((h) => h.agent === name)?.last_seen ?? '';
    const first = await waitFor(`a heartbeat of ${name}`, seen);
    const second = await waitFor(`another heartbeat of ${name}`, async () => ((await seen()) > first ? seen() : undefined));
    await waitFor(`a third heartbeat of ${name}`, async () => (await seen()) > second || undefined);
  }

  it('a paused step is not claimed while another step is; mesh status names it; it resumes', async () => {
    const m = await twoSiteMesh();
    const refused = await mesh(m, 'pause', 'proc1');
    assert.equal(refused.status, 2, 'a missing --why is bad input');
    assert.match(refused.stderr, /--why/);
    const paused = await mesh(m, 'pause', 'proc1', '--why', 'new proc1 release being installed');
    assert.equal(paused.status, 0, paused.stderr);
    assert.equal(paused.stdout, 'step proc1 paused\n');
    await seedClosed(m, 4);
    const agents = [agent(m, 'alpha'), agent(m, 'beta')];
    try {
      await waitFor('alpha did every proc0', async () => (await files.countDone(m.db)).get('proc0') === 4 || undefined, 60_000, 100);
      await twoBeatsOf(m, 'beta-1');
      assert.equal(await runsOf(m, 'proc1'), 0, 'a paused step ran');
      assert.equal((await files.countDone(m.db)).get('proc1') ?? 0, 0);
      assert.match(await readFile(join(m.dir, 'beta.log'), 'utf8'), /operator controls changed: paused proc1/);
      const status = await mesh(m, 'status');
      assert.match(
        status.stdout,
        /paused steps \(1\):\n {2}proc1 since \d\d:\d\d UTC by operator\/\S+: new proc1 release being installed\n {4}resume: mesh resume proc1 --why TEXT\n/,
      );
      assert.doesNotMatch(status.stdout, /step_stalled/);
      const resumed = await mesh(m, 'resume', 'proc1', '--why', 'installed');
      assert.equal(resumed.stdout, 'step proc1 resumed\n');
      await waitFor('beta did every proc1 after the resume', async () => (await files.countDone(m.db)).get('proc1') === 4 || undefined, 60_000, 100);
    } finally {
      await Promise.all(agents.map((a) => stopProcess(a)));
    }
    assert.equal(await runsOf(m, 'proc1'), 4, 'each proc1 ran once');
  });

  it('a drained site takes nothing while another site works; undrain', async () => {
    const m = await twoSiteMesh();
    assert.equal((await mesh(m, 'drain', 'gamma', '--why', 'x')).status, 2, 'an unknown site is bad input');
    const drained = await mesh(m, 'drain', 'beta', '--why', 'lyon farm maintenance');
    assert.equal(drained.status, 0, drained.stderr);
    await seedClosed(m, 3);
    const agents = [agent(m, 'alpha'), agent(m, 'beta')];
    try {
      await waitFor('alpha did every proc0', async () => (await files.countDone(m.db)).get('proc0') === 3 || undefined, 60_000, 100);
      await twoBeatsOf(m, 'beta-1');
      assert.equal(await runsOf(m, 'proc1'), 0, 'the drained site claimed');
      assert.match((await mesh(m, 'status')).stdout, /drained sites \(1\):\n {2}beta since .*: lyon farm maintenance/);
      assert.equal((await mesh(m, 'undrain', 'beta', '--why', 'done')).status, 0);
      await waitFor('beta did every proc1 after the undrain', async () => (await files.countDone(m.db)).get('proc1') === 3 || undefined, 60_000, 100);
    } finally {
      await Promise.all(agents.map((a) => stopProcess(a)));
    }
  });

  it('mesh retry --step S --failed: the dry run changes nothing, the real run retries exactly the matching documents', async () => {
    const m = await twoSiteMesh();
    const failed = (i: number, run: string, reason: string): DaqDocument =>
      ({
        _id: `run_${run}_${String(i).padStart(3, '0')}`,
        type: 'daqdocument',
        run_name: run,
        file_number: i,
        file: `/data/${run}_${i}`,
        size_in_bytes: 1,
        date_closed: '2026-12-01T10:00:00.000Z',
        status: 'proc1 failed',
        proc0: { ok: true, attempts: 1 },
        pending: { proc1: { ok: false, attempts: 3, reason } },
        history: historyTo('proc1 failed', ['proc0', 'proc1'], '2026-12-01T10:00:00.000Z', 'beta/beta-1', null),
      }) as DaqDocument;
    await m.db.bulk([
      failed(0, 'lg23b002', 'exit code 137'),
      failed(1, 'lg23b002', 'exit code 137'),
      failed(2, 'lg23b002', 'exit code 2'),
      failed(0, 'lg23b003', 'exit code 137'),
    ]);
    const revs = async () => (await m.db.allDocs<DaqDocument>({})).rows.map((r) => `${r.id} ${r.value.rev}`).join('\n');
    const before = await revs();
    assert.equal((await mesh(m, 'retry', '--step', 'proc1', '--failed')).status, 2, '--why is required');
    const dry = await mesh(m, 'retry', '--step', 'proc1', '--failed', '--reason', '137', '--run', 'lg23b002', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /^dry run: 2 failed proc1 document\(s\) of run lg23b002 whose reason matches \/137\/ would be retried; nothing changed\n {2}run_lg23b002_000 {2}exit code 137\n {2}run_lg23b002_001 {2}exit code 137\n$/,
    );
    assert.equal(await revs(), before, 'the dry run wrote');
    assert.equal((await mesh(m, 'retry', '--step', 'proc1', '--failed', '--reason', '(', '--why', 'x')).status, 2, 'a bad regular expression is bad input');
    const real = await mesh(m, 'retry', '--step', 'proc1', '--failed', '--reason', '137', '--run', 'lg23b002', '--why', 'OOM: memory raised');
    assert.equal(real.status, 0, real.stderr);
    assert.equal(real.stdout, 'retried 2 of 2 failed proc1 document(s) of run lg23b002 whose reason matches /137/\n');
    const statuses = Object.fromEntries(
      (await m.db.allDocs<DaqDocument>({ include_docs: true })).rows.filter((r) => r.doc?.type === 'daqdocument').map((r) => [r.id, r.doc?.status]),
    );
    assert.deepEqual(statuses, { run_lg23b002_000: 'good', run_lg23b002_001: 'good', run_lg23b002_002: 'proc1 failed', run_lg23b003_000: 'proc1 failed' });
    const doc = await m.db.get<DaqDocument>('run_lg23b002_000');
    assert.match(doc?.history.at(-1)?.note ?? '', /^retry requested: OOM: memory raised$/);
    assert.match(doc?.history.at(-1)?.by ?? '', /^operator\//);
  });
});
