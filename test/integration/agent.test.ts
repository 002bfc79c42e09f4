import assert from 'node:assert/strict';
import * as files from '../../store/files.js';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { type ServerProcess } from '../support/server-process.js';
import { makeMesh, runMesh, seedDocuments, spawnMeshProcess, startAgent, serverForSuite, stopProcess, waitFor } from '../support/mesh.js';
import { historyTo } from '../../core/provenance.js';

async function byStatus(db: import('../../store/database.js').Database): Promise<Record<string, number>> {
  return Object.fromEntries(await files.countByStatus(db));
}

/** Every line of every step's stdout log: one line per execution of a step. */
async function executions(logDir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const entry of await readdir(logDir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.out')) {
      lines.push(...(await readFile(join(entry.parentPath, entry.name), 'utf8')).split('\n').filter(Boolean));
    }
  }
  return lines;
}

describe('agent against a real embedded server', function () {
  this.timeout(600_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('4 agents racing on 2,000 documents and 3 steps run every (doc, step) exactly once', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1', 'proc2'] });
    // echo is the cheapest real program: each execution leaves "<doc> <step>" in its stdout log.
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    for (const step of raw.steps) step.run = ['echo', '{doc_id}', '{step}'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const ids = await seedDocuments(mesh, 2000);
    const agents = [1, 2, 3, 4].map((i) => startAgent(mesh, `racer-${i}`, ['--concurrency', '4']));
    await waitFor('every document good', async () => (await byStatus(mesh.db)).good === 2000 && [...(await files.countDone(mesh.db)).values()].every((n) => n === 2000), 480_000, 500);
    await Promise.all(agents.map((a) => stopProcess(a)));

    const lines = await executions(join(mesh.dir, 'logs'));
    const counts = new Map<string, number>();
    for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
    assert.equal(lines.length, 6000, `expected 6000 executions, got ${lines.length}`);
    for (const id of ids) for (const step of ['proc0', 'proc1', 'proc2']) assert.equal(counts.get(`${id} ${step}`), 1, `${id} ${step}`);
    const { rows } = await mesh.db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    for (const row of rows) {
      const doc = row.doc as DaqDocument;
      assert.equal(doc.status, 'good');
      for (const step of ['proc0', 'proc1', 'proc2']) assert.equal((doc[step] as StepRecord).ok, true, `${doc._id} ${step}`);
    }
  });

  it('a step whose agent was killed with -9 is reclaimed after its lease and finishes with attempts 2', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'], lease_s: 2, stepArgs: () => ['--sleep', '2500'] });
    const [id] = await seedDocuments(mesh, 1);
    const first = startAgent(mesh, 'victim');
    await waitFor('the claim', async () => (await mesh.db.get<DaqDocument>(id))?.status === 'proc0 in progress');
    await stopProcess(first, 'SIGKILL');
    const second = startAgent(mesh, 'rescuer');
    const done = await waitFor('the reclaimed step to finish', async () => {
      const doc = await mesh.db.get<DaqDocument>(id);
      return doc?.status === 'good' ? doc : undefined;
    });
    await stopProcess(second);
    const record = stepRecord(done, 'proc0') as StepRecord;
    assert.equal(record.attempts, 2);
    assert.equal(record.agent, 'rescuer');
    assert.ok(done.history.some((h) => h.note === 'lease expired, reclaimed'));
  });

  it('agents resume after the server restarts mid-run and lose nothing', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'], stepArgs: () => ['--sleep', '30'] });
    const ids = await seedDocuments(mesh, 150);
    const agents = [startAgent(mesh, 'steady-1', ['--concurrency', '2']), startAgent(mesh, 'steady-2', ['--concurrency', '2'])];
    await waitFor('some progress', async () => ((await byStatus(mesh.db)).good ?? 0) >= 20);
    await server.kill();
    await new Promise((r) => setTimeout(r, 1500));
    await server.restart();
    await waitFor('every document good', async () => (await byStatus(mesh.db)).good === 150 && [...(await files.countDone(mesh.db)).values()].every((n) => n === 150), 300_000, 500);
    await Promise.all(agents.map((a) => stopProcess(a)));
    const lines = (await readFile(mesh.runLog, 'utf8')).split('\n').filter(Boolean);
    const unique = new Set(lines);
    assert.equal(unique.size, 300);
    for (const id of ids) assert.ok(unique.has(`${id} proc0`) && unique.has(`${id} proc1`));
    assert.equal(lines.length, 300, 'no step ran twice');
  });

  it('a failing command is retried with backoff, then failed; mesh retry runs it again', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'], max_attempts: 2, stepArgs: (step) => (step === 'proc1' ? ['--fail-until', '2', '--counter', 'COUNTER'] : []) });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    raw.steps[1].run = raw.steps[1].run.map((a: string) => (a === 'COUNTER' ? join(mesh.dir, 'counter') : a));
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const [id] = await seedDocuments(mesh, 1);
    const agent = startAgent(mesh, 'retrier');
    const failed = await waitFor('proc1 failed', async () => {
      const doc = await mesh.db.get<DaqDocument>(id);
      return doc?.status === 'proc1 failed' ? doc : undefined;
    });
    const record = stepRecord(failed, 'proc1') as StepRecord;
    assert.equal(record.attempts, 2);
    assert.equal(record.exit_code, 3);
    assert.match(String(record.stderr_tail), /failing on purpose \(2\/2\)/);
    const retryEntry = failed.history.find((h) => h.note?.startsWith('attempt 1 failed, retry after'));
    assert.ok(retryEntry, 'the first failure scheduled a retry');
    const retried = await runMesh(['--config', mesh.configFile, 'retry', id]);
    assert.equal(retried.status, 0, retried.stderr);
    const done = await waitFor('proc1 good after retry', async () => {
      const doc = await mesh.db.get<DaqDocument>(id);
      return doc?.status === 'good' && (stepRecord(doc, 'proc1') as StepRecord).ok ? doc : undefined;
    });
    await stopProcess(agent);
    assert.ok(done.history.some((h) => h.from === 'proc1 failed' && h.note === 'retry requested'));
    assert.ok(done.history.length >= 6, 'history kept across the retry');
  });

  it('a ready document whose attempts are used up (max_attempts lowered) fails for an operator instead of being skipped as a lost race forever', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'], max_attempts: 2, push: false });
    const [control] = await seedDocuments(mesh, 1, 'lg23b009');
    const spent = { attempts: 3, ok: false, reason: 'exited with 1', retry_after: new Date(0).toISOString() };
    // Written before the design document, as a database where max_attempts was 3 would hold them.
    const ids = Array.from({ length: 3 }, (_, i) => `run_lg23b002_${String(i).padStart(3, '0')}`);
    await mesh.db.bulk(ids.map((id, i) => ({ _id: id, type: 'daqdocument', run_name: 'lg23b002', file_number: i, file: join(mesh.dir, 'daq', `lg23b002_${i}`), size_in_bytes: 0, date_closed: new Date().toISOString(), status: 'closed', history: historyTo('closed', []), pending: { proc0: spent } })));
    await runMesh(['--config', mesh.configFile, 'couchapp', 'push']);
    const agent = startAgent(mesh, 'limited');
    await waitFor('the spent documents failed, the control done', async () => {
      const docs = await Promise.all([...ids, control].map((id) => mesh.db.get<DaqDocument>(id)));
      return docs.slice(0, 3).every((d) => d?.status === 'proc0 failed') && docs[3]?.status === 'good';
    });
    await new Promise((r) => setTimeout(r, 1500)); // a sweep or two more: nothing left to retry
    assert.equal(await stopProcess(agent), 0);
    for (const id of ids) {
      const doc = (await mesh.db.get<DaqDocument>(id)) as DaqDocument;
      assert.equal(stepRecord(doc, 'proc0')?.reason, 'attempt limit 2 reached (3 counted attempts)');
      assert.equal(stepRecord(doc, 'proc0')?.attempts, 3, 'no attempt was made');
    }
    const runs = (await readFile(mesh.runLog, 'utf8')).trim().split('\n');
    assert.deepEqual(runs, [`${control} proc0`], 'only the control ran');
    const stopped = (await readFile(join(mesh.dir, 'limited.log'), 'utf8')).split('\n').filter((l) => l.includes('agent stopped')).map((l) => JSON.parse(l) as { lost_races: number; failed: number });
    assert.equal(stopped.length, 1);
    assert.equal(stopped[0].lost_races, 0, 'no claim was tried and counted as a lost race');
    assert.equal(stopped[0].failed, 3);
    const retried = await runMesh(['--config', mesh.configFile, 'retry', ids[0]]);
    assert.equal(retried.status, 0, retried.stderr);
    assert.match(retried.stdout, /proc0 is ready again/);
  });

  it('a step program never sees the mesh\'s credentials: MESH_*_PASSWORD(_FILE) stay with the agent', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    raw.steps[0].run = ['/usr/bin/env'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const [id] = await seedDocuments(mesh, 1);
    const secret = `pw-${Math.random().toString(36).slice(2)}`;
    // Credentials of a site this mesh does not use, so the agent itself still talks to the admin party.
    const agent = spawnMeshProcess(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--name', 'envcheck'], {
      logFile: join(mesh.dir, 'envcheck.log'),
      env: { MESH_ELSEWHERE_USER: 'someone', MESH_ELSEWHERE_PASSWORD: secret, MESH_ELSEWHERE_PASSWORD_FILE: `/run/${secret}`, MESH_STEP_HINT: 'kept' },
    });
    const done = await waitFor('the env step done', async () => {
      const doc = await mesh.db.get<DaqDocument>(id);
      return doc?.status === 'good' ? doc : undefined;
    });
    await stopProcess(agent);
    const printed = await readFile(stepRecord(done, 'proc0')?.stdout as string, 'utf8');
    assert.match(printed, /^MESH_STEP_HINT=kept$/m, 'the rest of the environment reaches the step');
    assert.match(printed, /^MESH_ELSEWHERE_USER=someone$/m);
    assert.doesNotMatch(printed, new RegExp(secret), 'no password and no password file reaches the step');
  });

  it('hostile file names are passed literally or refused with a reason, never executed', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    raw.steps[0].run = [process.execPath, raw.steps[0].run[1], '--log', mesh.runLog, '--doc', '{file}', '--step', '{step}'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const dir = join(mesh.dir, 'daq');
    const literal = [`${dir}/a b`, `${dir}/it's "quoted"`, `${dir}/x;touch ${mesh.dir}/pwned1`, `${dir}/$(touch ${mesh.dir}/pwned2)`, `${dir}/-rf`, `${dir}/\`id\``];
    const refused = [`${dir}/new\nline`, '-rf', `${dir}/../../etc/passwd`];
    const base = { type: 'daqdocument', run_name: 'lg23b002', size_in_bytes: 0, date_closed: new Date().toISOString(), status: 'closed', history: historyTo('closed', []) };
    await mesh.db.bulk([...literal, ...refused].map((file, i) => ({ ...base, _id: `hostile_${i}`, file_number: i, file })));
    const agent = startAgent(mesh, 'careful');
    await waitFor('every hostile document handled', async () => {
      const s = await byStatus(mesh.db);
      return s.good === literal.length && s.bad === refused.length;
    });
    await stopProcess(agent);
    const logged = (await readFile(mesh.runLog, 'utf8')).split('\n').filter(Boolean).map((l) => l.replace(/ proc0$/, ''));
    assert.deepEqual(logged.sort(), [...literal].sort());
    assert.ok(!existsSync(join(mesh.dir, 'pwned1')) && !existsSync(join(mesh.dir, 'pwned2')), 'nothing was executed');
    for (let i = literal.length; i < literal.length + refused.length; i++) {
      const doc = await mesh.db.get<DaqDocument>(`hostile_${i}`);
      assert.equal(doc?.status, 'bad');
      assert.match(String(doc?.history.at(-1)?.note), /refused: .*file/);
    }
  });
});
