/**
 * The operators' controls and bulk retry in process, against a real embedded server with real
 * accounts over HTTP: the server refuses a pause forged by an agent or a reader and an
 * operator's entry in another account's name; real Agent objects (a step the test controls)
 * claim nothing of a paused step while another step runs, finish what they were running, and
 * take the waiting documents at once on resume; a drained site takes nothing while another does;
 * the last known controls stay in force when the document cannot be read; `mesh retry --failed`'s
 * logic touches exactly the matching failed documents, and its dry run none.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'mocha';
import pino from 'pino';
import { Agent } from '../../agents/agent.js';
import type { AgentContext, ClaimedStepRunner } from '../../agents/context.js';
import { ControlsView } from '../../agents/controls.js';
import { apply } from '../../agents/writes.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { bulkRetry } from '../../coordinator/bulk-retry.js';
import { setControl } from '../../coordinator/controls.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { CONTROLS_ID, applyControl, noControls } from '../../core/operator-controls.js';
import { historyTo } from '../../core/provenance.js';
import { agentRole } from '../../core/roles.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { stepsOwnedBy } from '../../store/assignment.js';
import { readControls } from '../../store/controls.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import * as files from '../../store/files.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { waitFor } from '../support/mesh.js';

/** The real database, counting the reads of mesh:controls made through it (one per sweep). */
class ControlsReads extends Database {
  count = 0;
  override get<D>(id: string, qs: Record<string, unknown> = {}, options: { signal?: AbortSignal } = {}): Promise<D | undefined> {
    if (id === CONTROLS_ID) this.count++;
    return super.get<D>(id, qs, options);
  }
}

const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const ACCOUNTS = {
  op: ['mesh-operator'],
  reader: ['mesh-reader'],
  coord: ['mesh-coordinator'],
  'alpha-agent': [agentRole('alpha')],
  'beta-agent': [agentRole('beta')],
} as const;
type Account = keyof typeof ACCOUNTS | 'admin';
const passwordOf = (name: Account) => (name === 'admin' ? ADMIN_PASSWORD : `pw-${name}-${ADMIN_PASSWORD}`);

/** Log lines an agent wrote, to await what it learned (no sleeps). */
function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('operator controls and bulk retry in process: real server, real accounts, real agents', function () {
  this.timeout(120_000);
  let server: EmbeddedServer;
  let dir = '';
  let n = 0;

  before(async () => {
    dir = testFolder('mesh-controls-inproc-');
    server = await startEmbeddedServer({
      site: 'alpha',
      dataDir: join(dir, 'server'),
      logger: silentLogger(),
      admin: { user: 'admin', password: ADMIN_PASSWORD },
      passwordIterations: 10,
    });
    const users = open('admin', '_users');
    for (const [name, roles] of Object.entries(ACCOUNTS)) {
      await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles: [...roles], password: passwordOf(name as Account) });
    }
  });
  after(() => server?.close());

  function open(account: Account, database: string): Database {
    return new Database({ url: server.url, database, credentials: { user: account, password: passwordOf(account) } });
  }

  function meshConfig(database: string, sweepS = 1): MeshConfig {
    const site = (mayRun: string[]) => ({ server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs'), may_run: mayRun });
    return parseMeshConfig(
      {
        database,
        doc_type: 'daqdocument',
        sites: { alpha: site(['proc0']), beta: site(['proc1']) },
        ingest: { site: 'alpha', quiet_s: 1 },
        coordinator: { site: 'alpha' },
        steps: [
          { name: 'proc0', site: 'alpha', run: ['/bin/true'], out: join(dir, 'out', '{run_name}_{file_number}.p0'), max_attempts: 3, lease_s: 60 },
          { name: 'proc1', site: 'beta', run: ['/bin/true'], out: join(dir, 'out', '{run_name}_{file_number}.p1'), max_attempts: 3, lease_s: 60 },
        ],
        agent: { sweep_s: sweepS, heartbeat_s: 5, retry_base_s: 1, retry_cap_s: 10, grace_s: 5 },
      },
      join(dir, `${database}.json`),
    );
  }

  async function freshDatabase(prefix: string, sweepS = 1): Promise<{ config: MeshConfig; database: string }> {
    const database = `${prefix}_${n++}`;
    const config = meshConfig(database, sweepS);
    const admin = open('admin', database);
    await admin.ensure();
    await pushDesigns(admin, config);
    await pushSecurity(admin, Object.keys(config.sites));
    return { config, database };
  }

  /** Closed documents, catalogued by the ingest site's agent account as the server requires. */
  async function seedClosed(database: string, count: number, run = 'lg23b002'): Promise<string[]> {
    const docs = Array.from({ length: count }, (_, i) => ({
      _id: `run_${run}_${String(i).padStart(3, '0')}`,
      type: 'daqdocument',
      run_name: run,
      file_number: i,
      file: `/data/${run}_${i}`,
      size_in_bytes: 1,
      date_closed: '2026-12-01T10:00:00.000Z',
      status: 'closed',
      history: [{ at: new Date().toISOString(), from: null, to: 'closed', by: 'alpha/ingest', user: 'alpha-agent' }],
    }));
    const written = await open('alpha-agent', database).bulk(docs);
    assert.deepEqual(
      written.filter((w) => w.error),
      [],
    );
    return docs.map((d) => d._id);
  }

  function agentFor(
    config: MeshConfig,
    database: string,
    site: 'alpha' | 'beta',
    runStep: ClaimedStepRunner,
    options: { logger?: pino.Logger; db?: Database; once?: boolean } = {},
  ): Agent {
    const ctx: AgentContext = {
      config,
      site: config.sites[site],
      name: `${site}-1`,
      host: 'test-host',
      db: options.db ?? open(`${site}-agent`, database),
      logger: options.logger ?? silentLogger(),
      steps: stepsOwnedBy(site, undefined, config),
      now: () => new Date(),
      runStep,
    };
    return new Agent(ctx, { concurrency: 2, once: options.once ?? false });
  }

  /** Records every run and succeeds at once. */
  function succeeding(runs: string[]): ClaimedStepRunner {
    return async (ctx, claimed, step) => {
      runs.push(`${claimed._id}/${step}`);
      const doc = await apply(ctx, claimed, { type: 'succeed', step, agent: ctx.name, result: { exit_code: 0, duration_s: 0.001 } });
      return { end: 'succeeded', doc };
    };
  }

  const who = (why = 'tape robot down') => ({ by: 'operator/test', why });

  it('the server lets operators and the relay write mesh:controls and refuses agents, readers and forged authors', async () => {
    const { config, database } = await freshDatabase('forged');
    for (const account of ['alpha-agent', 'beta-agent', 'reader'] as const) {
      await assert.rejects(setControl(config, open(account, database), 'pause', 'proc1', who()), /may not pause steps or drain sites: operators do/, account);
    }
    assert.equal(await readControls(open('op', database)), undefined, 'nothing was stored');
    // A forged author: the operator's account writing an entry in another account's name.
    const forged = applyControl(noControls(), 'pause', 'proc1', { by: 'operator/x', user: 'alpha-agent', why: 'x' }, new Date())!;
    await assert.rejects(open('op', database).put(forged), /of account "alpha-agent" written by "op"/);
    const written = await setControl(config, open('op', database), 'pause', 'proc1', who('disk full'));
    assert.equal(written.changed, true);
    assert.deepEqual({ ...written.controls.paused.proc1, since: 'x' }, { since: 'x', by: 'operator/test', user: 'op', why: 'disk full' });
    assert.equal((await setControl(config, open('op', database), 'pause', 'proc1', who())).changed, false, 'pausing twice writes nothing');
    // An agent cannot lift the pause either, nor rewrite the history.
    const stored = (await readControls(open('alpha-agent', database)))!;
    await assert.rejects(open('alpha-agent', database).put({ ...stored, paused: {} }), /operators do/);
    await assert.rejects(open('op', database).put({ ...stored, history: [] }), /controls history entries cannot be removed/);
    // The coordinator's relay carries replicated writes of other accounts.
    const resumed = applyControl(stored, 'resume', 'proc1', { by: 'operator/elsewhere', user: 'someone-at-kit', why: 'fixed' }, new Date())!;
    await open('coord', database).put(resumed);
    assert.deepEqual((await readControls(open('reader', database)))?.paused, {});
    await assert.rejects(setControl(config, open('op', database), 'pause', 'proc9', who()), /step proc9 is not in the pipeline/);
    await assert.rejects(setControl(config, open('op', database), 'drain', 'nowhere', who()), /site nowhere is not in the config/);
  });

  it('a paused step is not claimed while another runs; its running step finishes; resume takes the waiting ones at once', async () => {
    const { config, database } = await freshDatabase('paused');
    await seedClosed(database, 6);
    const operator = open('op', database);
    const runs: string[] = [];
    // proc1 blocks until the test lets it go: what beta runs when the pause comes is still running.
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const beta = capturingLogger();
    const proc1: ClaimedStepRunner = async (ctx, claimed, step, stop) => {
      await gate;
      return succeeding(runs)(ctx, claimed, step, stop);
    };
    const alphaAgent = agentFor(config, database, 'alpha', succeeding(runs));
    const betaReads = new ControlsReads({ url: server.url, database, credentials: { user: 'beta-agent', password: passwordOf('beta-agent') } });
    const betaAgent = agentFor(config, database, 'beta', proc1, { logger: beta.logger, db: betaReads });
    const finished = [alphaAgent.run(), betaAgent.run()];
    try {
      await waitFor('beta runs a proc1', () => betaAgent.counters.claimed >= 1 || undefined, 30_000, 20);
      await setControl(config, operator, 'pause', 'proc1', who('proc1 program being replaced'));
      await waitFor('beta learns of the pause', () => beta.lines.some((l) => l.includes('paused proc1')) || undefined, 30_000, 20);
      release();
      const running = await waitFor('every proc0 done, the running proc1s finished', async () => {
        const done = await files.countDone(operator);
        return (done.get('proc0') === 6 && done.get('proc1') === betaAgent.counters.claimed && done.get('proc1')) || undefined;
      });
      assert.ok(running >= 1 && running <= 2, `${running} proc1 were running at the pause (concurrency 2)`);
      // Two further sweeps of beta's (each reads the controls) with five documents waiting for proc1: none claimed.
      const betaDb = open('beta-agent', database);
      assert.deepEqual(Object.fromEntries(await files.countByStatus(betaDb)), { good: 6 }, '6 - running waiting for proc1, the others complete');
      const claimedBefore = betaAgent.counters.claimed;
      const reads = betaReads.count;
      await waitFor('two more sweeps of beta', () => betaReads.count >= reads + 2 || undefined, 30_000, 50);
      assert.equal(betaAgent.counters.claimed, claimedBefore, 'nothing of a paused step is claimed');
      assert.equal((await files.countDone(betaDb)).get('proc1'), running);
      const resumedAt = Date.now();
      await setControl(config, operator, 'resume', 'proc1', who('new program installed'));
      await waitFor('every proc1 done after the resume', async () => (await files.countDone(betaDb)).get('proc1') === 6 || undefined, 30_000, 50);
      // From the feed, not the next sweep: well under the 60 s a sweep-only agent would need at a real sweep_s.
      assert.ok(Date.now() - resumedAt < 10_000);
    } finally {
      release();
      await Promise.all([alphaAgent.stop(), betaAgent.stop()]);
      await Promise.all(finished);
    }
    assert.equal(new Set(runs).size, runs.length, 'nothing ran twice');
    assert.equal(runs.length, 12);
  });

  it('a drained site takes no new claims while another site works; undrain lets it claim again', async () => {
    const { config, database } = await freshDatabase('drained');
    await seedClosed(database, 5);
    const operator = open('op', database);
    await setControl(config, operator, 'drain', 'beta', who('lyon batch farm maintenance'));
    const runs: string[] = [];
    const betaReads = new ControlsReads({ url: server.url, database, credentials: { user: 'beta-agent', password: passwordOf('beta-agent') } });
    const agents = [agentFor(config, database, 'alpha', succeeding(runs)), agentFor(config, database, 'beta', succeeding(runs), { db: betaReads })];
    const finished = agents.map((a) => a.run());
    try {
      await waitFor('alpha did every proc0', async () => (await files.countDone(operator)).get('proc0') === 5 || undefined);
      const reads = betaReads.count;
      await waitFor('two more sweeps of beta', () => betaReads.count >= reads + 2 || undefined, 30_000, 50);
      assert.equal(agents[1].counters.claimed, 0, 'the drained site claimed nothing');
      assert.equal((await files.countDone(operator)).get('proc1') ?? 0, 0);
      await setControl(config, operator, 'undrain', 'beta', who('maintenance over'));
      await waitFor('beta did every proc1', async () => (await files.countDone(operator)).get('proc1') === 5 || undefined, 30_000, 50);
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await Promise.all(finished);
    }
    const history = (await readControls(operator))!.history.map((e) => [e.action, e.target, e.user, e.why]);
    assert.deepEqual(history, [
      ['drain', 'beta', 'op', 'lyon batch farm maintenance'],
      ['undrain', 'beta', 'op', 'maintenance over'],
    ]);
  });

  it('with sweeps a minute apart, a resume reaches a running agent through its changes feed and its waiting documents are taken at once', async () => {
    const { config, database } = await freshDatabase('feed', 60);
    const operator = open('op', database);
    await setControl(config, operator, 'pause', 'proc1', who());
    const runs: string[] = [];
    const agents = [agentFor(config, database, 'alpha', succeeding(runs)), agentFor(config, database, 'beta', succeeding(runs))];
    const finished = agents.map((a) => a.run());
    try {
      await seedClosed(database, 3);
      await waitFor('alpha did every proc0 (from the feed)', async () => (await files.countDone(operator)).get('proc0') === 3 || undefined, 20_000, 50);
      assert.equal(agents[1].counters.claimed, 0);
      const resumedAt = Date.now();
      await setControl(config, operator, 'resume', 'proc1', who('done'));
      await waitFor('beta did every proc1', async () => (await files.countDone(operator)).get('proc1') === 3 || undefined, 20_000, 50);
      assert.ok(Date.now() - resumedAt < 20_000, 'well before the next sweep (sweep_s 60, at least 48 s)');
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await Promise.all(finished);
    }
  });

  it('agent --once: a pass claims nothing of a paused step, and all of it once resumed', async () => {
    const { config, database } = await freshDatabase('once');
    await seedClosed(database, 3);
    await setControl(config, open('op', database), 'pause', 'proc0', who());
    const runs: string[] = [];
    const once = () => agentFor(config, database, 'alpha', succeeding(runs), { once: true });
    const first = once();
    await first.run();
    assert.equal(first.counters.claimed, 0, 'a paused step was claimed by a --once pass');
    await setControl(config, open('op', database), 'resume', 'proc0', who('done'));
    const second = once();
    await second.run();
    assert.equal(second.counters.claimed, 3);
    assert.equal(runs.length, 3);
  });

  it('keeps the last known controls when the document cannot be read, and says so', async () => {
    const other = await startEmbeddedServer({ site: 'gone', dataDir: join(dir, 'gone'), logger: silentLogger() });
    const { config } = await freshDatabase('unread');
    const db = new Database({ url: other.url, database: 'unread', retry: 'never', timeoutMs: 2000 });
    await db.ensure();
    await setControl(config, db, 'pause', 'proc1', who());
    const log = capturingLogger();
    const view = new ControlsView(db, 'beta', log.logger);
    assert.equal(await view.refresh(), true);
    assert.deepEqual(
      view.claimable(config.steps).map((s) => s.name),
      ['proc0'],
    );
    await other.close();
    assert.equal(await view.refresh(), false);
    assert.deepEqual(
      view.claimable(config.steps).map((s) => s.name),
      ['proc0'],
      'the pause holds while the server is away',
    );
    assert.ok(
      log.lines.some((l) => l.includes('operator controls unreadable, keeping the last known (paused proc1')),
      log.lines.join(''),
    );
  });

  /** A document whose `step` failed for good with `reason`, stored by the coordinator's relay (a fixture, not a run). */
  function failedDoc(run: string, i: number, step: 'proc0' | 'proc1', reason: string): DaqDocument {
    const steps = ['proc0', 'proc1'];
    return {
      _id: `run_${run}_${String(i).padStart(3, '0')}`,
      type: 'daqdocument',
      run_name: run,
      file_number: i,
      file: `/data/${run}_${i}`,
      size_in_bytes: 1,
      date_closed: '2026-12-01T10:00:00.000Z',
      status: `${step} failed`,
      ...(step === 'proc1' ? { proc0: { ok: true, attempts: 1 } } : {}),
      pending: { [step]: { ok: false, attempts: 3, reason } },
      history: historyTo(`${step} failed`, steps, '2026-12-01T10:00:00.000Z', 'beta/beta-1', null),
    } as DaqDocument;
  }

  it('bulk retry touches exactly the failed documents matching the reason and the run; its dry run none; an agent may not', async () => {
    const { config, database } = await freshDatabase('bulk');
    const docs = [
      ...[0, 1, 2].map((i) => failedDoc('lg23b002', i, 'proc1', 'exit code 137 (killed: out of memory)')),
      ...[3, 4].map((i) => failedDoc('lg23b002', i, 'proc1', 'exit code 1')),
      ...[0, 1].map((i) => failedDoc('lg23b003', i, 'proc1', 'exit code 137 (killed: out of memory)')),
      failedDoc('lg23b002', 5, 'proc0', 'exit code 137 (killed: out of memory)'),
    ];
    const written = await open('coord', database).bulk(docs);
    assert.deepEqual(
      written.filter((w) => w.error),
      [],
    );
    const revs = async () =>
      new Map(
        (await open('op', database).allDocs<DaqDocument>({ include_docs: true })).rows
          .filter((r) => !String(r.id).startsWith('_'))
          .map((r) => [String(r.id), r.value.rev]),
      );
    const before = await revs();
    const filter = { step: 'proc1', reason: /137/, run: 'lg23b002' };
    const operator = open('op', database);
    const options = { by: 'operator/test', why: 'OOM on node 17, memory raised', pageSize: 2 };
    const dry = await bulkRetry(config, operator, filter, { ...options, dryRun: true });
    assert.equal(dry.matched, 3);
    assert.deepEqual(
      dry.sample.map((m) => m.doc),
      docs.slice(0, 3).map((d) => d._id),
    );
    assert.deepEqual(await revs(), before, 'the dry run wrote nothing');

    const refused = await bulkRetry(config, open('beta-agent', database), filter, { ...options, dryRun: false });
    assert.equal(refused.retried, 0);
    assert.equal(refused.errors.length, 3);
    assert.match(refused.errors[0].error, /may not retry proc1: operators do/);
    assert.deepEqual(await revs(), before, 'the server refused every write of the agent');

    const progress: number[] = [];
    const result = await bulkRetry(config, operator, filter, { ...options, dryRun: false, onProgress: (done) => progress.push(done) });
    assert.deepEqual(
      { matched: result.matched, retried: result.retried, moved_on: result.moved_on, errors: result.errors },
      { matched: 3, retried: 3, moved_on: 0, errors: [] },
    );
    assert.deepEqual(progress.sort(), [1, 2, 3]);
    const after = await revs();
    const touched = [...after].filter(([id, rev]) => before.get(id) !== rev).map(([id]) => id);
    assert.deepEqual(
      touched.sort(),
      docs.slice(0, 3).map((d) => d._id),
    );
    for (const id of touched) {
      const doc = (await operator.get<DaqDocument>(id))!;
      assert.equal(doc.status, 'good');
      const last = doc.history[doc.history.length - 1];
      assert.deepEqual(
        { from: last.from, to: last.to, by: last.by, user: last.user, note: last.note },
        {
          from: 'proc1 failed',
          to: 'good',
          by: 'operator/test',
          user: 'op',
          note: 'retry requested: OOM on node 17, memory raised',
        },
      );
    }
    // Again: nothing matches any more.
    assert.equal((await bulkRetry(config, operator, filter, { ...options, dryRun: false })).matched, 0);
  });
});
