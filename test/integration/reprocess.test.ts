/**
 * `mesh reprocess` against the embedded server over HTTP, with real accounts: agents as
 * processes (the agent account), the command as a process (the operator account). A version
 * bump re-runs the step and the later ones only for the runs chosen, the old records stay in
 * superseded[], and the server refuses a reprocess from an agent and a done record dropped
 * without being superseded.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'mocha';
import { type DaqDocument, type StepRecord } from '../../core/document.js';
import { agentRole } from '../../core/roles.js';
import { transition } from '../../core/state.js';
import { Database } from '../../store/database.js';
import { pushSecurity } from '../../store/security.js';
import { type TestMesh, makeMesh, runMesh, spawnMeshProcess, stopAllMeshProcesses, stopProcess, waitFor } from '../support/mesh.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const passwordOf = (name: string) => (name === 'admin' ? ADMIN_PASSWORD : `pw-${name}-${ADMIN_PASSWORD}`);
const ACCOUNTS = [
  { name: 'op', roles: ['mesh-operator'] },
  { name: 'alpha-agent', roles: [agentRole('alpha')] },
];
/** The site's credentials in the environment, as the mesh command reads them (never on a command line). */
const as = (name: string) => ({ MESH_ALPHA_USER: name, MESH_ALPHA_PASSWORD: passwordOf(name) });
const RUNS = ['lg23b001', 'lg23b002', 'lg23b003'];

describe('mesh reprocess: a new step version re-made for chosen runs, the old records kept', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess({ env: { MESH_TEST_USER: 'admin', MESH_TEST_PASSWORD: ADMIN_PASSWORD } });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    for (const account of ACCOUNTS)
      await users.put({ _id: `org.couchdb.user:${account.name}`, type: 'user', name: account.name, roles: account.roles, password: passwordOf(account.name) });
  });
  afterEach(async () => assert.equal(await stopAllMeshProcesses(), 0, 'a test left mesh processes running'));
  after(() => server?.stop());

  /** A mesh of three steps, proc1 at version 1.9 writing under v{version}, proc2 at 1.0; accounts admitted. */
  async function versionedMesh(): Promise<TestMesh> {
    const mesh = await makeMesh(server.url, { credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    await pushSecurity(mesh.db, ['alpha']);
    await setVersions(mesh, { proc1: '1.9', proc2: '1.0' });
    return mesh;
  }
  async function setVersions(mesh: TestMesh, versions: Record<string, string>): Promise<void> {
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    for (const step of raw.steps) {
      if (versions[step.name] === undefined) continue;
      step.version = versions[step.name];
      step.out = join(mesh.dir, 'out', step.name, 'v{version}', '{run_name}_{file_number}');
    }
    await writeFile(mesh.configFile, JSON.stringify(raw, null, 2));
  }
  /** `count` closed files of `run`, catalogued as ingest would (by the agent account of the ingest site: the server checks it). */
  async function seedDocuments(mesh: TestMesh, count: number, run = 'lg23b002'): Promise<string[]> {
    const ingest = new Database({ url: server.url, database: mesh.config.database, credentials: { user: 'alpha-agent', password: passwordOf('alpha-agent') } });
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = `run_${run}_${String(i).padStart(4, '0')}`;
      const at = new Date().toISOString();
      await ingest.put({
        _id: id,
        type: 'daqdocument',
        run_name: run,
        file_number: i,
        file: join(mesh.dir, 'daq', `${run}_${String(i).padStart(3, '0')}`),
        size_in_bytes: 0,
        date_closed: at,
        status: 'closed',
        history: [{ at, from: null, to: 'closed', by: 'alpha/ingest', user: 'alpha-agent' }],
      });
      ids.push(id);
    }
    return ids;
  }
  const agent = (mesh: TestMesh) =>
    spawnMeshProcess(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--name', 'a1'], {
      logFile: join(mesh.dir, 'agent.log'),
      env: as('alpha-agent'),
    });
  const docsOf = async (mesh: TestMesh, ids: string[]) => Promise.all(ids.map(async (id) => (await mesh.db.get<DaqDocument>(id)) as DaqDocument));
  const complete = (doc: DaqDocument) => doc.status === 'good' && ['proc0', 'proc1', 'proc2'].every((s) => (doc[s] as StepRecord | undefined)?.ok === true);
  const record = (doc: DaqDocument, step: string) => doc[step] as StepRecord;
  async function runsToCompletion(mesh: TestMesh, ids: string[], what: string, done: (doc: DaqDocument) => boolean): Promise<DaqDocument[]> {
    const child = agent(mesh);
    const docs = await waitFor(what, async () => {
      const all = await docsOf(mesh, ids);
      return all.every(done) ? all : undefined;
    });
    assert.equal(await stopProcess(child), 0, 'the agent stopped cleanly');
    return docs;
  }

  it('re-runs proc1 (1.9 → 1.10) and proc2 only for the runs chosen; superseded[] keeps the old records; an agent account is refused', async () => {
    const mesh = await versionedMesh();
    const byRun = new Map<string, string[]>();
    for (const run of RUNS) byRun.set(run, await seedDocuments(mesh, 2, run));
    const ids = [...byRun.values()].flat();
    const chosen = [...byRun.get('lg23b002')!, ...byRun.get('lg23b003')!];
    const first = await runsToCompletion(mesh, ids, 'every file through proc2', complete);
    for (const doc of first) {
      assert.equal(record(doc, 'proc1').version, '1.9');
      assert.equal(record(doc, 'proc2').version, '1.0');
      assert.equal(record(doc, 'proc0').version, undefined, 'a step without a version records none');
      assert.match(String(record(doc, 'proc1').file), /\/v1\.9\//);
    }
    const before = new Map(first.map((d) => [d._id, d]));

    // 1.10 comes after 1.9 (natural order): every proc1 record is older now.
    await setVersions(mesh, { proc1: '1.10' });
    const cli = (args: string[], account: string) => runMesh(['--config', mesh.configFile, 'reprocess', 'proc1', ...args], as(account), 60_000);
    const dry = await cli(['--runs', 'lg23b002..lg23b003'], 'op');
    assert.equal(dry.status, 0, dry.stderr);
    // The input of proc1 is proc0's output: "<doc id>\n", 18 bytes each.
    assert.match(
      dry.stdout,
      /proc1: version 1\.10 in the config; records older, runs lg23b002\.\.lg23b003:\n {2}1\.9 +4 documents +72 B\n4 documents, 72 B of inputs/,
    );
    assert.match(dry.stdout, /e\.g\. run_lg23b002_0000, run_lg23b002_0001, run_lg23b003_0000, run_lg23b003_0001\n/);
    assert.match(dry.stdout, /dry run: nothing changed/);
    assert.deepEqual(await docsOf(mesh, ids), first, 'a dry run changes nothing');
    const whole = await cli([], 'op');
    assert.match(whole.stdout, /6 documents, 108 B of inputs/);

    // The agent's account: its own server refuses the write, whatever the client decided.
    const forged = await cli(['--run', 'lg23b001', '--yes', '--why', 'not mine to decide'], 'alpha-agent');
    assert.equal(forged.status, 1, forged.stdout + forged.stderr);
    assert.match(
      forged.stderr,
      /the server refused the reprocess \(.*"alpha-agent" may not reprocess "proc1": operators do.*\); it takes an operator's account/,
    );
    assert.deepEqual(await docsOf(mesh, ids), first, 'nothing changed by the refused reprocess');
    const noWhy = await cli(['--runs', 'lg23b002..lg23b003', '--yes'], 'op');
    assert.equal(noWhy.status, 2);
    assert.match(noWhy.stderr, /--why is missing/);

    const done = await cli(['--runs', 'lg23b002..lg23b003', '--yes', '--why', 'proc1 1.10 fixes the baseline'], 'op');
    assert.equal(done.status, 0, done.stdout + done.stderr);
    assert.match(done.stdout, /proc1 ready again on 4 documents \(72 B of inputs\) in [\d.]+ s; 0 already at the version/);
    assert.match(done.stderr, /reprocess proc1: 4\/4/);
    for (const doc of await docsOf(mesh, chosen)) {
      const old = before.get(doc._id) as DaqDocument;
      assert.equal(doc.status, 'good');
      assert.equal(doc.proc1, undefined);
      assert.equal(doc.proc2, undefined);
      assert.deepEqual(doc.proc0, old.proc0, 'the step before is untouched');
      assert.deepEqual(
        doc.superseded?.map((s) => [s.step, s.record, s.by, s.user, s.why, s.version]),
        [
          ['proc1', old.proc1, `operator/${userInfo().username}`, 'op', 'proc1 1.10 fixes the baseline', '1.10'],
          ['proc2', old.proc2, `operator/${userInfo().username}`, 'op', 'proc1 1.10 fixes the baseline', '1.0'],
        ],
      );
      const entry = doc.history[doc.history.length - 1];
      assert.deepEqual([entry.from, entry.to, entry.reprocess, entry.note, entry.user], ['good', 'good', 'proc1', 'proc1 1.10 fixes the baseline', 'op']);
    }
    for (const run of ['lg23b001']) for (const doc of await docsOf(mesh, byRun.get(run)!)) assert.deepEqual(doc, before.get(doc._id), `${run} is not chosen`);

    // The original scripts' readers: proc1 is not done for the chosen files (its view lists them as waiting for proc1).
    const waitingProc1 = await viewKeys(server, mesh, 'proc', 'proc1');
    assert.deepEqual(waitingProc1, ['lg23b002_000', 'lg23b002_001', 'lg23b003_000', 'lg23b003_001']);
    const procByRun = (await viewRows(server, mesh, 'proc', 'procbyrun')).map((r) => r.key as [string, string]);
    assert.deepEqual(
      procByRun.map(([file, last]) => `${file} ${last}`),
      ['lg23b001_000 proc2', 'lg23b001_001 proc2', 'lg23b002_000 proc0', 'lg23b002_001 proc0', 'lg23b003_000 proc0', 'lg23b003_001 proc0'],
    );

    const runsBefore = (await readFile(mesh.runLog, 'utf8')).trim().split('\n').length;
    const second = await runsToCompletion(
      mesh,
      ids,
      'the chosen files through proc1 1.10 and proc2 again',
      (doc) => (complete(doc) && record(doc, 'proc1').version === '1.10') || !chosen.includes(doc._id),
    );
    for (const doc of second.filter((d) => chosen.includes(d._id))) {
      assert.equal(record(doc, 'proc1').version, '1.10');
      assert.match(String(record(doc, 'proc1').file), /\/v1\.10\//);
      assert.equal(record(doc, 'proc1').attempts, 2, 'attempt numbers go on growing');
      assert.equal(record(doc, 'proc2').version, '1.0');
      assert.notDeepEqual(record(doc, 'proc2'), (before.get(doc._id) as DaqDocument).proc2, 'proc2 ran again after proc1');
      // The superseded output is still where its record says (v1.9), next to the new one.
      await access(String((doc.superseded?.[0].record as StepRecord).file));
      assert.equal(doc.superseded?.length, 2, 'superseded is kept as the reprocess wrote it');
    }
    const runLog = (await readFile(mesh.runLog, 'utf8')).trim().split('\n');
    assert.deepEqual(
      runLog.slice(runsBefore).sort(),
      chosen.flatMap((id) => [`${id} proc1`, `${id} proc2`]).sort(),
      'only the chosen files ran again, proc1 and proc2 only',
    );
    const after = await cli(['--runs', 'lg23b002..lg23b003'], 'op');
    assert.match(after.stdout, /none: nothing to reprocess/);
    const rest = await cli(['--below-version', '1.9'], 'op');
    assert.match(rest.stdout, /records older, below 1\.9, all runs:\n {2}none/, 'lg23b001 is at 1.9, not below it');
    // mesh status: the records still older, per step, from the by-version view.
    const status = await runMesh(['--config', mesh.configFile, 'status'], as('op'), 60_000);
    assert.match(
      status.stdout,
      /\n {2}proc1: 2 done records older than version 1\.10 \(mesh --config \S+ reprocess proc1 counts them, --yes re-makes them\)\n/,
      status.stdout,
    );
    assert.doesNotMatch(status.stdout, /proc2: \d+ done records older/, 'proc2 is at its version everywhere');
  });

  it('the server refuses a done record dropped without being superseded, even from an operator or the admin', async () => {
    const mesh = await versionedMesh();
    const ids = await seedDocuments(mesh, 1);
    const [doc] = await runsToCompletion(mesh, ids, 'the file through proc2', complete);
    const reprocessed = transition(doc, { type: 'reprocess', step: 'proc1', by: 'operator/op', why: 'v2', user: 'op' }, new Date(), mesh.config);
    assert.ok(reprocessed.ok);
    const operator = new Database({ url: server.url, database: mesh.config.database, credentials: { user: 'op', password: passwordOf('op') } });
    const { superseded: _kept, ...dropped } = reprocessed.doc;
    const unmarked = { ...reprocessed.doc, history: reprocessed.doc.history.map((h) => ({ ...h, reprocess: undefined })) };
    for (const db of [operator, mesh.db]) {
      await assert.rejects(
        db.put(dropped),
        (e: Error & { code?: string }) => e.code === 'FORBIDDEN' && /proc1 cannot be removed; proc2 cannot be removed/.test(e.message),
      );
      await assert.rejects(db.put(JSON.parse(JSON.stringify(unmarked))), (e: Error) =>
        /history entry from "good" to "good" is a reprocess: it must name the step/.test(e.message),
      );
    }
    // The honest write goes through, and superseded can then neither shrink nor change.
    const stored = { ...reprocessed.doc, _rev: await operator.put(reprocessed.doc) };
    await assert.rejects(operator.put({ ...stored, superseded: [] }), /superseded entries cannot be removed/);
    await assert.rejects(
      mesh.db.put({ ...stored, superseded: [{ ...stored.superseded![0], why: 'rewritten' }, stored.superseded![1]] }),
      /superseded entry 0 cannot change/,
    );
  });
});

async function viewRows(server: ServerProcess, mesh: TestMesh, design: string, view: string): Promise<Array<{ key: unknown; id: string }>> {
  const url = `${server.url}/${mesh.config.database}/_design/${design}/_view/${view}`;
  const answer = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` } });
  assert.equal(answer.status, 200, url);
  return ((await answer.json()) as { rows: Array<{ key: unknown; id: string }> }).rows;
}

async function viewKeys(server: ServerProcess, mesh: TestMesh, design: string, view: string): Promise<unknown[]> {
  return (await viewRows(server, mesh, design, view)).map((r) => r.key);
}
