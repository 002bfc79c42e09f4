import assert from 'node:assert/strict';
import * as files from '../../store/files.js';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { type ServerProcess } from '../support/server-process.js';
import { makeMesh, runMesh, seedDocuments, spawnMeshProcess, startAgent, serverForSuite, stopProcess, waitFor } from '../support/mesh.js';
import { historyTo } from '../../core/provenance.js';
import { Agent } from '../../agents/agent.js';
import type { AgentContext } from '../../agents/context.js';
import { silentLogger } from '../../core/log.js';
import { pushDesigns } from '../../store/designs.js';
import { Database, type ViewRow } from '../../store/database.js';
import { READY, type ViewContract } from '../../couchapp/mesh-views.js';

/** A database client that counts the agent's sweeps (one query of the ready view's documents per owned step and sweep). */
class SweepCountingDatabase extends Database {
  readyQueries = 0;

  override rows<K, V, D = unknown>(contract: ViewContract<K, V>, qs: Record<string, unknown> = {}): Promise<Array<ViewRow<V, D> & { id: string; key: K }>> {
    if (contract.name === READY.name && qs.include_docs === true) this.readyQueries++;
    return super.rows<K, V, D>(contract, qs);
  }
}

async function byStatus(db: Database): Promise<Record<string, number>> {
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

  it('4 agents racing on 60 documents and 3 steps run every (doc, step) exactly once, and they did race', async () => {
    // 60 documents (180 claims for 16 slots) are enough for the four agents to collide on claims
    // (asserted below through their lost-race counters), which is what this test is about; more
    // only repeats the race.
    const count = 60;
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1', 'proc2'] });
    // echo is the cheapest real program: each execution leaves "<doc> <step>" in its stdout log.
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    for (const step of raw.steps) step.run = ['echo', '{doc_id}', '{step}'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const ids = await seedDocuments(mesh, count);
    const names = [1, 2, 3, 4].map((i) => `racer-${i}`);
    const agents = names.map((name) => startAgent(mesh, name, ['--concurrency', '4']));
    await waitFor(
      'every document good',
      async () => (await byStatus(mesh.db)).good === count && [...(await files.countDone(mesh.db)).values()].every((n) => n === count),
      240_000,
      250,
    );
    assert.deepEqual(await Promise.all(agents.map((a) => stopProcess(a))), [0, 0, 0, 0]);

    const lines = await executions(join(mesh.dir, 'logs'));
    const counts = new Map<string, number>();
    for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
    assert.equal(lines.length, 3 * count, `expected ${3 * count} executions, got ${lines.length}`);
    for (const id of ids) for (const step of ['proc0', 'proc1', 'proc2']) assert.equal(counts.get(`${id} ${step}`), 1, `${id} ${step}`);
    const { rows } = await mesh.db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    assert.equal(rows.length, count);
    for (const row of rows) {
      const doc = row.doc as DaqDocument;
      assert.equal(doc.status, 'good');
      for (const step of ['proc0', 'proc1', 'proc2']) assert.equal((doc[step] as StepRecord).ok, true, `${doc._id} ${step}`);
    }
    // The race really happened: claims collided (a 409 is a lost race), and every agent worked.
    const stopped = await Promise.all(
      names.map(async (name) =>
        (await readFile(join(mesh.dir, `${name}.log`), 'utf8'))
          .split('\n')
          .filter((l) => l.includes('agent stopped'))
          .map((l) => JSON.parse(l) as { lost_races: number; succeeded: number }),
      ),
    );
    for (const [i, lines] of stopped.entries()) assert.equal(lines.length, 1, `${names[i]} logged its stop once`);
    const lost = stopped.reduce((sum, [s]) => sum + s.lost_races, 0);
    console.log(`      lost races: ${stopped.map(([s]) => s.lost_races).join(', ')}; steps run: ${stopped.map(([s]) => s.succeeded).join(', ')}`);
    assert.ok(lost > 0, `no claim was lost by any agent: the agents did not race (${JSON.stringify(stopped)})`);
    for (const [i, [s]] of stopped.entries()) assert.ok(s.succeeded > 0, `${names[i]} ran no step`);
    assert.equal(
      stopped.reduce((sum, [s]) => sum + s.succeeded, 0),
      3 * count,
      'the agents count one success per (doc, step)',
    );
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
    // 40 documents: the server goes down after 10, so most of the run comes after the restart
    // (each step is a node process: the run's size costs CPU, not proof).
    const count = 40;
    const ids = await seedDocuments(mesh, count);
    const agents = [startAgent(mesh, 'steady-1', ['--concurrency', '2']), startAgent(mesh, 'steady-2', ['--concurrency', '2'])];
    const before = await waitFor('some progress', async () => {
      const good = (await byStatus(mesh.db)).good ?? 0;
      return good >= count / 4 && good;
    });
    assert.ok(before < count / 2, `the server went down after ${before} of ${count} documents: too late to test a resumption`);
    await server.kill();
    await new Promise((r) => setTimeout(r, 1500));
    await server.restart();
    await waitFor(
      'every document good',
      async () => (await byStatus(mesh.db)).good === count && [...(await files.countDone(mesh.db)).values()].every((n) => n === count),
      300_000,
      250,
    );
    await Promise.all(agents.map((a) => stopProcess(a)));
    const lines = (await readFile(mesh.runLog, 'utf8')).split('\n').filter(Boolean);
    const unique = new Set(lines);
    assert.equal(unique.size, 2 * count);
    for (const id of ids) assert.ok(unique.has(`${id} proc0`) && unique.has(`${id} proc1`));
    assert.equal(lines.length, 2 * count, 'no step ran twice');
  });

  it('a failing command is retried with backoff, then failed; mesh retry runs it again', async () => {
    const mesh = await makeMesh(server.url, {
      steps: ['proc0', 'proc1'],
      max_attempts: 2,
      stepArgs: (step) => (step === 'proc1' ? ['--fail-until', '2', '--counter', 'COUNTER'] : []),
    });
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

  it('a ready document whose attempts are used up (max_attempts lowered) fails for an operator instead of being skipped as a lost race forever (agent in process)', async () => {
    // Logic only: the Agent class in this process, against the real server over HTTP, with the
    // noop step program as its real step; its sweeps are counted instead of slept through.
    const mesh = await makeMesh(server.url, { steps: ['proc0'], max_attempts: 2, push: false });
    const [control] = await seedDocuments(mesh, 1, 'lg23b009');
    const spent = { attempts: 3, ok: false, reason: 'exited with 1', retry_after: new Date(0).toISOString() };
    // Written before the design document, as a database where max_attempts was 3 would hold them.
    const ids = Array.from({ length: 3 }, (_, i) => `run_lg23b002_${String(i).padStart(3, '0')}`);
    await mesh.db.bulk(
      ids.map((id, i) => ({
        _id: id,
        type: 'daqdocument',
        run_name: 'lg23b002',
        file_number: i,
        file: join(mesh.dir, 'daq', `lg23b002_${i}`),
        size_in_bytes: 0,
        date_closed: new Date().toISOString(),
        status: 'closed',
        history: historyTo('closed', []),
        pending: { proc0: spent },
      })),
    );
    await pushDesigns(mesh.db, mesh.config);
    const db = new SweepCountingDatabase({ url: server.url, database: mesh.config.database });
    const { config } = mesh;
    const ctx: AgentContext = {
      config,
      site: config.sites.alpha,
      name: 'limited',
      host: hostname(),
      db,
      logger: silentLogger(),
      steps: config.steps,
      now: () => new Date(),
    };
    const agent = new Agent(ctx, { concurrency: 1, once: false });
    const running = agent.run();
    try {
      await waitFor('the spent documents failed, the control done', async () => {
        const docs = await Promise.all([...ids, control].map((id) => mesh.db.get<DaqDocument>(id)));
        return docs.slice(0, 3).every((d) => d?.status === 'proc0 failed') && docs[3]?.status === 'good';
      });
      // Two more sweeps (sweep_s is 1): nothing left to retry, nothing claimed again.
      const seen = db.readyQueries;
      await waitFor('two more sweeps', () => db.readyQueries >= seen + 2, 20_000, 50);
    } finally {
      await agent.stop();
      await running;
    }
    assert.equal(agent.state, 'stopped');
    for (const id of ids) {
      const doc = (await mesh.db.get<DaqDocument>(id)) as DaqDocument;
      assert.equal(stepRecord(doc, 'proc0')?.reason, 'attempt limit 2 reached (3 counted attempts)');
      assert.equal(stepRecord(doc, 'proc0')?.attempts, 3, 'no attempt was made');
    }
    const runs = (await readFile(mesh.runLog, 'utf8')).trim().split('\n');
    assert.deepEqual(runs, [`${control} proc0`], 'only the control ran');
    assert.equal(agent.counters.lost_races, 0, 'no claim was tried and counted as a lost race');
    // Exactly 3: a spent document offered twice (sweep and feed) is counted by the write that recorded it only.
    assert.equal(agent.counters.failed, 3);
    assert.equal(agent.counters.succeeded, 1);
    const retried = await runMesh(['--config', mesh.configFile, 'retry', ids[0]]);
    assert.equal(retried.status, 0, retried.stderr);
    assert.match(retried.stdout, /proc0 is ready again/);
  });

  it("a step program never sees the mesh's credentials: MESH_*_PASSWORD(_FILE) stay with the agent", async () => {
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
    const literal = [
      `${dir}/a b`,
      `${dir}/it's "quoted"`,
      `${dir}/x;touch ${mesh.dir}/pwned1`,
      `${dir}/$(touch ${mesh.dir}/pwned2)`,
      `${dir}/-rf`,
      `${dir}/\`id\``,
    ];
    const refused = [`${dir}/new\nline`, '-rf', `${dir}/../../etc/passwd`];
    const base = {
      type: 'daqdocument',
      run_name: 'lg23b002',
      size_in_bytes: 0,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: historyTo('closed', []),
    };
    await mesh.db.bulk([...literal, ...refused].map((file, i) => ({ ...base, _id: `hostile_${i}`, file_number: i, file })));
    const agent = startAgent(mesh, 'careful');
    await waitFor('every hostile document handled', async () => {
      const s = await byStatus(mesh.db);
      return s.good === literal.length && s.bad === refused.length;
    });
    await stopProcess(agent);
    const logged = (await readFile(mesh.runLog, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.replace(/ proc0$/, ''));
    assert.deepEqual(logged.sort(), [...literal].sort());
    assert.ok(!existsSync(join(mesh.dir, 'pwned1')) && !existsSync(join(mesh.dir, 'pwned2')), 'nothing was executed');
    for (let i = literal.length; i < literal.length + refused.length; i++) {
      const doc = await mesh.db.get<DaqDocument>(`hostile_${i}`);
      assert.equal(doc?.status, 'bad');
      assert.match(String(doc?.history.at(-1)?.note), /refused: .*file/);
    }
  });
});
