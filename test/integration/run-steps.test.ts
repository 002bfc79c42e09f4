/**
 * Run-level steps (issue 14 part 2) against real parts: the embedded server over HTTP with real
 * accounts and the generated validate_doc_update, `mesh ingest --watch`, and real agent
 * processes (one at modane for proc0, two at lyon racing for proc1 and the run step `archive`,
 * the example tar-and-archive program). Every execution of the archive program appends to a
 * run log (examples/steps/fault-switch.mjs MESH_RUN_LOG): the invariant is counted there, not
 * read from the records the agents wrote.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import type { AgentContext } from '../../agents/context.js';
import { runWorkReady } from '../../agents/run-readiness.js';
import { RunSteps } from '../../agents/run-steps.js';
import { tarEntries } from '../../agents/tar-members.js';
import { apply } from '../../agents/writes.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { metricsText } from '../../coordinator/metrics.js';
import { buildSnapshot } from '../../dashboard/snapshot.js';
import { meshStatus } from '../../coordinator/status.js';
import type { DaqDocument, StepRecord } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { type RunDocument, runDocumentId } from '../../core/run-document.js';
import { agentRole } from '../../core/roles.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { NOOP, runMesh, spawnMeshProcess, stopAllMeshProcesses, stopProcess, waitFor } from '../support/mesh.js';
import { type ServerProcess, repoRoot, startServerProcess } from '../support/server-process.js';

const ARCHIVE = join(repoRoot, 'examples', 'steps', 'archive-run.mjs');
const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const passwordOf = (name: string) => (name === 'admin' ? ADMIN_PASSWORD : `pw-${name}-${ADMIN_PASSWORD}`);
const ACCOUNTS = { 'modane-agent': [agentRole('modane')], 'lyon-1': [agentRole('lyon')], 'lyon-2': [agentRole('lyon')] };

interface Execution {
  run: string;
  pid: number;
  start: number;
  end?: number;
}

describe('run steps: a run archived once after its last file (embedded server, real agents and ingest)', function () {
  this.timeout(300_000);
  let server: ServerProcess;
  let config: MeshConfig;
  let configFile: string;
  const dir = testFolder('mesh-runs-');
  const daq = join(dir, 'daq');
  const faults = join(dir, 'faults');
  const runLog = join(dir, 'archive-runs.log');
  const lyonAgents: ChildProcess[] = [];
  const open = (user: string) => new Database({ url: server.url, database: config.database, credentials: { user, password: passwordOf(user) } });
  let admin: Database;

  const readRunDoc = (run: string) => admin.get<RunDocument>(runDocumentId(run));
  const fileDoc = (run: string, n: number) => admin.get<DaqDocument>(`run_${run}_${String(n).padStart(3, '0')}`);
  async function daqFile(run: string, n: number): Promise<void> {
    await writeFile(join(daq, `${run}_${String(n).padStart(3, '0')}`), randomBytes(2000 + n));
  }
  /** The archive program's executions per run, from its own log lines (start, alive…, end). */
  async function executions(): Promise<Map<string, Execution[]>> {
    const text = existsSync(runLog) ? await readFile(runLog, 'utf8') : '';
    const byPid = new Map<number, Execution>();
    for (const line of text.split('\n').filter(Boolean)) {
      const entry = JSON.parse(line) as { program: string; input: string; pid: number; at: string; started: string; phase: string };
      if (entry.program !== 'archive') continue;
      const known = byPid.get(entry.pid) ?? { run: entry.input, pid: entry.pid, start: Date.parse(entry.started) };
      if (entry.phase === 'end') known.end = Date.parse(entry.at);
      byPid.set(entry.pid, known);
    }
    const byRun = new Map<string, Execution[]>();
    for (const e of byPid.values()) byRun.set(e.run, [...(byRun.get(e.run) ?? []), e]);
    return byRun;
  }
  const archived = (run: string) => async () => {
    const doc = await readRunDoc(run);
    return doc?.archive !== undefined ? doc : undefined;
  };

  before(async () => {
    await mkdir(daq, { recursive: true });
    await mkdir(faults, { recursive: true });
    server = await startServerProcess({ env: { MESH_TEST_USER: 'admin', MESH_TEST_PASSWORD: ADMIN_PASSWORD } });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    for (const [name, roles] of Object.entries(ACCOUNTS))
      await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles, password: passwordOf(name) });
    const node = process.execPath;
    const fileStep = (name: string, site: string) => ({
      name,
      site,
      run: [node, NOOP, '--doc', '{doc_id}', '--touch', '{out}'],
      out: join(dir, 'out', name, '{run_name}_{file_number}'),
      timeout_s: 30,
      max_attempts: 5,
      lease_s: 10,
    });
    const raw = {
      database: 'runs',
      doc_type: 'daqdocument',
      sites: {
        modane: { server: server.url, reachable: false, long_running: true, log_dir: join(dir, 'logs', 'modane'), may_run: ['proc0'] },
        lyon: { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'lyon'), may_run: ['proc1', 'archive'] },
      },
      ingest: { site: 'modane', pattern: '^(?<run_name>lg23[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 0, run_quiet_s: 6 },
      steps: [
        fileStep('proc0', 'modane'),
        fileStep('proc1', 'lyon'),
        {
          name: 'archive',
          site: 'lyon',
          scope: 'run',
          after: 'proc1',
          custody: true,
          run: [node, ARCHIVE, '{run_name}', '{members_file}', '{out}'],
          out: join(dir, 'archive', '{run_name}.tar'),
          timeout_s: 60,
          max_attempts: 6,
          lease_s: 10,
        },
      ],
      agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 1, retry_cap_s: 2, grace_s: 5 },
    };
    configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    config = parseMeshConfig(raw, configFile);
    admin = open('admin');
    await admin.ensure();
    await pushDesigns(admin, config);
    await pushSecurity(admin, Object.keys(config.sites));
    const modaneEnv = { MESH_MODANE_USER: 'modane-agent', MESH_MODANE_PASSWORD: passwordOf('modane-agent') };
    spawnMeshProcess(['--config', configFile, 'ingest', daq, '--site', 'modane', '--watch', '--interval', '1'], {
      logFile: join(dir, 'ingest.log'),
      env: modaneEnv,
    });
    spawnMeshProcess(['--config', configFile, 'agent', '--site', 'modane', '--name', 'modane-1'], { logFile: join(dir, 'modane-1.log'), env: modaneEnv });
    for (const name of ['lyon-1', 'lyon-2']) {
      lyonAgents.push(
        spawnMeshProcess(['--config', configFile, 'agent', '--site', 'lyon', '--name', name], {
          logFile: join(dir, `${name}.log`),
          env: { MESH_LYON_USER: name, MESH_LYON_PASSWORD: passwordOf(name), MESH_RUN_LOG: runLog, MESH_FAULT_DIR: faults },
        }),
      );
    }
  });
  after(async () => {
    await stopAllMeshProcesses();
    await server?.stop();
  });

  it('a run of 20 files is archived once, only after its last file has done proc1, with its members and a verified custody record', async () => {
    const run = 'lg23a001';
    // The last file's proc1 fails until the test lets it: the closed run must wait for it.
    await writeFile(join(faults, `run_${run}_019.fail`), '');
    for (let n = 0; n < 19; n++) await daqFile(run, n);
    const open19 = await waitFor(
      '19 members catalogued',
      async () => ((await readRunDoc(run))?.members.length === 19 ? readRunDoc(run) : undefined),
      60_000,
      200,
    );
    assert.equal(open19?.closed_at, undefined, 'the run is still open');
    await daqFile(run, 19);
    await writeFile(join(daq, `${run}.closed`), '');
    const closed = await waitFor('the run closed by its marker with 20 members', async () => {
      const doc = await readRunDoc(run);
      return doc?.closed_by === 'marker' && doc.members.length === 20 ? doc : undefined;
    });
    assert.deepEqual(
      closed.members.map((m) => m.doc_id),
      Array.from({ length: 20 }, (_, n) => `run_${run}_${String(n).padStart(3, '0')}`),
    );
    await waitFor('the last file failed proc1 once, the others done', async () => {
      const last = await fileDoc(run, 19);
      const others = await Promise.all(Array.from({ length: 19 }, (_, n) => fileDoc(run, n)));
      return (last?.pending?.proc1 as StepRecord | undefined)?.reason && others.every((d) => d?.proc1 !== undefined);
    });
    const waiting = await readRunDoc(run);
    assert.equal(waiting?.status, 'closed', 'not archived while a member has not done proc1');
    assert.equal(waiting?.pending, undefined);
    await rm(join(faults, `run_${run}_019.fail`));
    const done = await waitFor('the run archived', archived(run), 60_000, 200);
    const record = done.archive as StepRecord & { members: Array<{ doc_id: string; sha256: string }> };
    const lastProc1 = (await fileDoc(run, 19))?.proc1 as StepRecord;
    assert.ok(
      (record.started as string) >= (lastProc1.finished as string),
      `archive started ${record.started}, the last file's proc1 finished ${lastProc1.finished}`,
    );
    assert.equal(done.status, 'good');
    assert.equal(record.members.length, 20);
    const tar = await tarEntries(join(dir, 'archive', `${run}.tar`));
    for (const m of closed.members) assert.equal(tar.get(m.file)?.sha256, m.sha256, `${m.file} in the archive with its catalogued sha256`);
    assert.equal(done.custody?.length, 1);
    assert.deepEqual(
      done.custody?.[0].members,
      closed.members.map((m) => ({ doc_id: m.doc_id, sha256: m.sha256 })),
    );
    assert.equal(done.custody?.[0].site, 'lyon');
    assert.ok(['lyon-1', 'lyon-2'].includes(done.custody?.[0].account as string));
    assert.equal((await executions()).get(run)?.length, 1, 'the archive program ran once for the run');
  });

  it('a run closes by quiet; a file of it catalogued after its step started is a late member, reported in status and /metrics', async () => {
    const run = 'lg23b002';
    for (let n = 0; n < 3; n++) await daqFile(run, n);
    const done = await waitFor('the quiet run archived', archived(run), 60_000, 200);
    assert.equal(done.closed_by, 'quiet');
    assert.equal(done.members.length, 3);
    await daqFile(run, 3);
    const late = await waitFor('the late file recorded', async () => ((await readRunDoc(run))?.late_members?.length === 1 ? readRunDoc(run) : undefined));
    assert.equal(late?.late_members?.[0].doc_id, `run_${run}_003`);
    assert.equal(late?.members.length, 3, 'not a member of the archived run');
    await waitFor('the ingest says so', async () => (await readFile(join(dir, 'ingest.log'), 'utf8')).includes(`late member of run ${run}`));
    const openAdmin = () => admin;
    const status = await meshStatus(config, openAdmin);
    assert.deepEqual(status.runs?.late, [{ run_name: run, late_members: 1 }]);
    assert.ok((status.runs?.counts.done ?? 0) >= 2);
    const page = await buildSnapshot(config, openAdmin, { windowMs: 3_600_000, hours: 1 });
    assert.deepEqual(page.run_documents?.late, [{ run_name: run, late_members: 1 }], 'the page has it too');
    const metrics = await metricsText(config, openAdmin);
    assert.match(metrics.body, new RegExp(`couchmesh_run_late_members\\{run="${run}"\\} 1`));
    assert.match(metrics.body, /couchmesh_runs\{state="done"\} [2-9]/);
    const text = await runMesh(
      ['--config', configFile, 'status'],
      { MESH_MODANE_USER: 'admin', MESH_MODANE_PASSWORD: ADMIN_PASSWORD, MESH_LYON_USER: 'admin', MESH_LYON_PASSWORD: ADMIN_PASSWORD },
      60_000,
    );
    assert.match(text.stdout, new RegExp(`${run}: 1 late member\\(s\\), catalogued after its run step started`));
  });

  it('a failing run step is retried and then succeeds; every attempt ran once', async () => {
    const run = 'lg23c003';
    await writeFile(join(faults, `${run}.fail`), '');
    for (let n = 0; n < 2; n++) await daqFile(run, n);
    await writeFile(join(daq, `${run}.closed`), '');
    await waitFor('a failed attempt', async () => /exited with 4/.test(String((await readRunDoc(run))?.pending?.archive?.reason)), 60_000, 100);
    await rm(join(faults, `${run}.fail`));
    const done = await waitFor('archived after the retry', archived(run), 60_000, 200);
    const record = done.archive as StepRecord;
    assert.ok(record.attempts >= 2, `attempts ${record.attempts}`);
    const past = record.past_attempts as Array<{ ok?: boolean }>;
    assert.ok(past.length >= 1 && past.every((p) => p.ok === false), JSON.stringify(past));
    assert.equal((await executions()).get(run)?.length, record.attempts, 'the program ran once per attempt');
  });

  it('two agents racing: each run archived exactly once, no two executions of one run at a time (processes, then a forced race in process)', async () => {
    // The lyon processes go: the next runs are raced by two in-process run workers that start together.
    await Promise.all(lyonAgents.map((child) => stopProcess(child)));
    const runs = ['lg23e005', 'lg23f006', 'lg23g007'];
    for (const run of runs) {
      for (let n = 0; n < 2; n++) await daqFile(run, n);
      await writeFile(join(daq, `${run}.closed`), '');
    }
    const lyon = (name: string): AgentContext => ({
      config,
      site: config.sites.lyon,
      name,
      host: 'race-host',
      db: open(name),
      logger: silentLogger(),
      steps: config.steps.filter((s) => s.site === 'lyon'),
      now: () => new Date(),
    });
    // proc1 of the members, written as the lyon agent would (the processes are gone).
    for (const run of runs) {
      await waitFor(`${run} closed, proc0 done`, async () => {
        const doc = await readRunDoc(run);
        const files = await Promise.all([0, 1].map((n) => fileDoc(run, n)));
        return doc?.closed_at !== undefined && files.every((f) => f?.status === 'good');
      });
      for (const n of [0, 1]) {
        const ctx = lyon('lyon-1');
        const file = (await fileDoc(run, n)) as DaqDocument;
        const claimed = await apply(ctx, file, {
          type: 'claim',
          step: 'proc1',
          mode: 'run',
          site: 'lyon',
          agent: 'lyon-1',
          host: 'h',
          lease_until: new Date(Date.now() + 60_000).toISOString(),
        });
        await apply(ctx, claimed, { type: 'succeed', step: 'proc1', agent: 'lyon-1', result: { exit_code: 0, duration_s: 0 } });
      }
    }
    // What would wake lyon if its agents could not stay up (agents/trigger.ts): ready run work, members done.
    assert.equal(await runWorkReady(admin, config, 'lyon', new Date()), true);
    assert.equal(await runWorkReady(admin, config, 'modane', new Date()), false, 'modane runs no run step');
    const counters = () => ({ claimed: 0, lost_races: 0, succeeded: 0, failed: 0, retries: 0 });
    const workers = [counters(), counters()];
    const stop = new AbortController();
    // The program's executions logged as the processes' were (the step inherits the agent's environment).
    process.env.MESH_RUN_LOG = runLog;
    try {
      await Promise.all(['lyon-1', 'lyon-2'].map((name, i) => new RunSteps(lyon(name), workers[i]).sweep(stop.signal, stop.signal)));
    } finally {
      delete process.env.MESH_RUN_LOG;
    }
    assert.equal(workers[0].claimed + workers[1].claimed, 3, `claims won: ${JSON.stringify(workers)}`);
    assert.equal(workers[0].succeeded + workers[1].succeeded, 3);
    for (const run of runs) assert.equal((await readRunDoc(run))?.status, 'good', run);
    assert.equal(await runWorkReady(admin, config, 'lyon', new Date()), false, 'nothing left to wake lyon for');
    // The invariant over every run of this suite, from the program's own log.
    const all = await executions();
    const attempts = new Map<string, number>();
    for (const run of ['lg23a001', 'lg23b002', 'lg23c003', ...runs]) attempts.set(run, ((await readRunDoc(run))?.archive as StepRecord).attempts);
    for (const [run, count] of attempts) assert.equal(all.get(run)?.length, count, `${run}: ${count} attempt(s), as many executions`);
    for (const [run, list] of all) {
      const sorted = [...list].sort((a, b) => a.start - b.start);
      for (let i = 1; i < sorted.length; i++)
        assert.ok(sorted[i].start >= (sorted[i - 1].end ?? Number.POSITIVE_INFINITY), `${run}: executions ${sorted[i - 1].pid} and ${sorted[i].pid} overlap`);
    }
    const lost = workers[0].lost_races + workers[1].lost_races;
    console.log(`      in-process race: claims ${workers.map((w) => w.claimed).join('+')}, lost races ${lost}`);
  });

  it('a run step failed for good is made ready again by an operator (mesh retry runinfo_<run> --step archive)', async () => {
    const run = 'lg23h008';
    await writeFile(join(faults, `${run}.fail`), '');
    for (let n = 0; n < 2; n++) await daqFile(run, n);
    await writeFile(join(daq, `${run}.closed`), '');
    await waitFor(`${run} closed, proc0 done`, async () => {
      const files = await Promise.all([0, 1].map((n) => fileDoc(run, n)));
      return (await readRunDoc(run))?.closed_at !== undefined && files.every((f) => f?.status === 'good');
    });
    const ctx = (name: string): AgentContext => ({
      // One attempt only: the first failure is final.
      config: { ...config, run_steps: config.run_steps?.map((s) => ({ ...s, max_attempts: 1 })) },
      site: config.sites.lyon,
      name,
      host: 'h',
      db: open(name),
      logger: silentLogger(),
      steps: [],
      now: () => new Date(),
    });
    for (const n of [0, 1]) {
      const file = (await fileDoc(run, n)) as DaqDocument;
      const claimed = await apply(ctx('lyon-1'), file, {
        type: 'claim',
        step: 'proc1',
        mode: 'run',
        site: 'lyon',
        agent: 'lyon-1',
        host: 'h',
        lease_until: new Date(Date.now() + 60_000).toISOString(),
      });
      await apply(ctx('lyon-1'), claimed, { type: 'succeed', step: 'proc1', agent: 'lyon-1', result: { exit_code: 0, duration_s: 0 } });
    }
    const counters = { claimed: 0, lost_races: 0, succeeded: 0, failed: 0, retries: 0 };
    const stop = new AbortController();
    process.env.MESH_FAULT_DIR = faults;
    try {
      await new RunSteps(ctx('lyon-2'), counters).sweep(stop.signal, stop.signal);
    } finally {
      delete process.env.MESH_FAULT_DIR;
    }
    assert.equal((await readRunDoc(run))?.status, 'archive failed');
    await rm(join(faults, `${run}.fail`));
    const retried = await runMesh(
      ['--config', configFile, 'retry', runDocumentId(run), '--step', 'archive'],
      { MESH_LYON_USER: 'admin', MESH_LYON_PASSWORD: ADMIN_PASSWORD },
      30_000,
    );
    assert.equal(retried.status, 0, retried.stderr);
    assert.equal((await readRunDoc(run))?.status, 'closed');
    await new RunSteps({ ...ctx('lyon-2'), config }, counters).sweep(stop.signal, stop.signal);
    const done = await readRunDoc(run);
    assert.equal(done?.status, 'good');
    assert.equal((done?.archive as StepRecord).attempts, 2);
    assert.equal(counters.failed + counters.succeeded, 2);
  });

  it('forged run documents are refused by the server, whoever writes them', async () => {
    const run = 'lg23a001';
    const stored = (await readRunDoc(run)) as RunDocument;
    const other = (await readRunDoc('lg23b002')) as RunDocument;
    const refused = async (user: string, body: object, why: RegExp, by: 'put' | 'bulk' = 'put') => {
      const db = open(user);
      let reason = '';
      if (by === 'bulk') {
        const [row] = await db.bulk([body]);
        reason = row.error ? `${row.error} ${row.reason}` : '';
      } else {
        reason = await db.put(body as { _id: string }).then(
          () => '',
          (error: Error) => error.message,
        );
      }
      assert.match(reason, why, `${user}: ${JSON.stringify(body).slice(0, 200)} → ${reason || 'accepted'}`);
    };
    await refused('lyon-1', { ...stored, members: stored.members.slice(1) }, /members entries cannot be removed/);
    await refused(
      'modane-agent',
      { ...stored, members: [{ ...stored.members[0], sha256: '0'.repeat(64) }, ...stored.members.slice(1)] },
      /members entry 0 cannot change/,
    );
    await refused('modane-agent', { ...stored, members: [...stored.members, { ...other.members[0] }] }, /members cannot grow once a run step started/, 'bulk');
    await refused(
      'lyon-2',
      { ...other, late_members: [] },
      /late_members entries cannot be removed.*may not write late_members of a run document: the ingest site does/,
    );
    await refused('modane-agent', { ...stored, closed_at: new Date().toISOString() }, /closed_at cannot change once written/);
    await refused('lyon-2', { ...stored, archive: { ...(stored.archive as object), file: '/elsewhere.tar' } }, /archive is done and cannot change/);
    await refused(
      'lyon-1',
      { ...stored, custody: [...(stored.custody ?? []), { ...stored.custody?.[0], site: 'modane', account: 'lyon-1' }] },
      /custody entry 1 must name the writer's site and account/,
    );
    const forgedNew = {
      _id: runDocumentId('lg23z999'),
      type: 'daqrun',
      run_name: 'lg23z999',
      members: [],
      status: 'closed',
      history: [{ at: new Date().toISOString(), from: null, to: 'closed', by: 'lyon/ingest', user: 'lyon-1' }],
    };
    await refused('lyon-1', forgedNew, /"lyon-1" may not catalogue files as "lyon\/ingest"/);
    await refused(
      'modane-agent',
      { ...forgedNew, status: 'good', archive: { ok: true, attempts: 1 }, history: [{ ...forgedNew.history[0], by: 'modane/ingest', user: 'modane-agent' }] },
      /a new document starts closed, with no step record|status good/,
    );
    assert.deepEqual(await readRunDoc(run), stored, 'the run document is unchanged');
    assert.equal(await readRunDoc('lg23z999'), undefined);
  });
});
