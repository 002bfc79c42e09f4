/**
 * Issue 13 §1 in process: a chain stuck while every count looks normal is flagged by the real
 * coordinator round against two real embedded servers (replication between them running), and
 * each alert reaches the log, the hook (a real process), `/metrics`, `mesh status` and the page's
 * snapshot, with what to do. The documents are written by the state machine with times in the
 * past; the round's clock is the test's (ctx.now), so no test waits for a threshold. The
 * triggered runs are real child processes (a stand-in for lyon's `mesh agent --once` that fails
 * the way a run with wrong credentials does), recorded by the real TriggerRecorder.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { TriggerRecorder } from '../../agents/trigger-record.js';
import { RemoteTriggers } from '../../agents/trigger.js';
import { formatStatus } from '../../cli/commands/status.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SiteConfig } from '../../config/types.js';
import { AlertTracker, currentAlerts } from '../../coordinator/alerts.js';
import { flowsOf, serverFlows } from '../../coordinator/flow.js';
import { metricsText } from '../../coordinator/metrics.js';
import { ReplicationMonitor } from '../../coordinator/replication.js';
import { type CoordinatorContext, coordinatorRound } from '../../coordinator/round.js';
import { meshStatus } from '../../coordinator/status.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { buildSnapshot } from '../../dashboard/snapshot.js';
import { Database } from '../../store/database.js';
import { writeMarker } from '../../store/markers.js';
import { pushDesigns } from '../../store/designs.js';
import { embeddedServersForSuite } from '../support/in-process.js';
import { waitFor } from '../support/mesh.js';

const HOOK = `import { appendFileSync, readFileSync } from 'node:fs';
appendFileSync(process.argv[2], readFileSync(0, 'utf8'));
`;
/** Lyon's agent as a run with a refused login ends: a pino error line, then mesh's failure line; exit 1. Exit 0 once its file argument exists. */
const LYON_RUN = `import { existsSync } from 'node:fs';
if (existsSync(process.argv[2])) process.exit(0);
console.log(JSON.stringify({ level: 50, time: Date.now(), msg: 'heartbeat (running): write mesh-agent:lyon:h:once', err: '401 unauthorized' }));
console.error('mesh: not authorised: Name or password is incorrect.');
process.exit(1);
`;

describe('stuck-chain alerts in process: the coordinator round, two real servers, real triggered runs', function () {
  this.timeout(60_000);
  // Before the servers close (this hook is defined first): a replication whose peer closes first
  // retries for ever even once cancelled (PouchDB's backoff), and the test process never exits.
  after(async () => {
    for (const site of ['modane', 'kit'] as const) {
      const jobs = new Database({ url: suite.server(site).url, database: '_replicator' });
      const { rows } = await jobs.allDocs<unknown>({});
      for (const row of rows.filter((r) => !String(r.id).startsWith('_design/'))) await jobs.put({ _id: String(row.id), _rev: row.value.rev, _deleted: true });
    }
  });
  const suite = embeddedServersForSuite('mesh-stuck-inproc-', ['modane', 'kit']);
  let dir: string;
  let raw: Record<string, unknown>;
  let config: MeshConfig;
  let open: (site: SiteConfig, database?: string) => Database;
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);

  before(async () => {
    dir = suite.dir;
    const [modane, kit] = [suite.server('modane'), suite.server('kit')];
    await writeFile(join(dir, 'hook.mjs'), HOOK);
    await writeFile(join(dir, 'lyon-run.mjs'), LYON_RUN);
    raw = {
      database: 'stuck',
      doc_type: 'daqdocument',
      sites: {
        modane: { server: modane.url, reachable: false, long_running: true, may_run: ['proc0'], log_dir: join(dir, 'logs', 'modane') },
        kit: { server: kit.url, reachable: true, long_running: true, may_run: [], log_dir: join(dir, 'logs', 'kit') },
        lyon: {
          server: kit.url,
          credentials_of: 'kit',
          reachable: true,
          long_running: false,
          may_run: ['proc1'],
          batch: { system: 'slurm' },
          mesh: [process.execPath, join(dir, 'lyon-run.mjs'), join(dir, 'lyon-ok')],
          log_dir: join(dir, 'logs', 'lyon'),
        },
      },
      ingest: { site: 'modane', quiet_s: 1 },
      steps: [
        { name: 'proc0', site: 'modane', run: ['/bin/true'], out: join(dir, 'out0', '{run_name}_{file_number}') },
        { name: 'proc1', site: 'lyon', run: ['/bin/true'], out: join(dir, 'out1', '{run_name}_{file_number}') },
      ],
      coordinator: { site: 'modane', interval_s: 1 },
      alerts: { stalled_s: 60, failing_runs: 3, unheard_s: 120, hook: [process.execPath, join(dir, 'hook.mjs'), join(dir, 'hook.jsonl')] },
    };
    config = parseMeshConfig(raw, join(dir, 'mesh.json'));
    open = (site, database) => new Database({ url: site.server, database: database ?? config.database });
  });

  const modaneDb = () => open(config.sites.modane);
  const kitDb = () => open(config.sites.kit);
  const secondsAgo = (s: number) => new Date(Date.now() - s * 1000);

  /** The next version of `doc` after `event` at `at`, written to `db`. */
  async function step(db: Database, doc: DaqDocument, event: MeshEvent, at: Date): Promise<DaqDocument> {
    const result = transition(doc, event, at, config);
    assert.ok(result.ok, result.ok ? '' : result.error.message);
    const rev = await db.put(result.doc);
    return { ...result.doc, _rev: rev };
  }

  /** Catalogued `ago` seconds ago, proc0 done 5 s later: ready for proc1 since then. */
  async function readyForProc1(n: number, ago: number): Promise<DaqDocument> {
    const closed = secondsAgo(ago).toISOString();
    const fresh: DaqDocument = {
      _id: `run_lg23b000_00${n}`,
      type: 'daqdocument',
      run_name: 'lg23b000',
      file_number: n,
      file: `/daq/lg23b000_00${n}`,
      size_in_bytes: 1,
      date_closed: closed,
      status: 'closed',
      history: [{ at: closed, from: null, to: 'closed', by: 'modane/ingest', user: null }],
    };
    fresh._rev = await modaneDb().put(fresh);
    const claimed = await step(
      modaneDb(),
      fresh,
      { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'm1', host: 'h', lease_until: secondsAgo(ago - 60).toISOString() },
      secondsAgo(ago - 1),
    );
    return step(modaneDb(), claimed, { type: 'succeed', step: 'proc0', agent: 'm1', result: { exit_code: 0, duration_s: 4 } }, secondsAgo(ago - 5));
  }

  function hookEvents(): Array<{ key: string; state: string; action: string; message: string }> {
    const file = join(dir, 'hook.jsonl');
    return existsSync(file)
      ? readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { key: string; state: string; action: string; message: string })
      : [];
  }

  it('raises step_stalled, site_failing (runs, then batch jobs) and site_unheard when they hold, clears them when they end, on every channel', async () => {
    const tracker = new AlertTracker({ logger, hook: config.alerts.hook, hookTimeoutMs: 10_000 });
    const ctx: CoordinatorContext = { config, open, logger, by: 'coordinator/modane', now: clock, alerts: tracker };
    const monitor = new ReplicationMonitor({ intervalMs: 1000 });
    let round = 0;
    const keys = async () => (await coordinatorRound(ctx, monitor, ++round)).alerts.map((a) => a.key).sort();

    // The first round makes the database and the design on both servers (and replication between them).
    for (const db of [modaneDb(), kitDb()]) {
      await db.ensure();
      await pushDesigns(db, config);
    }
    const docs: DaqDocument[] = [];
    for (let n = 0; n < 5; n++) docs.push(await readyForProc1(n, 100));
    // Ready for 95 s: 35 s by a clock one minute behind (below stalled_s = 60), 95 s by the real one.
    offsetMs = -60_000;
    assert.deepEqual(await keys(), []);
    await waitFor('the documents replicated to kit', async () => (await kitDb().get(docs[4]._id)) !== undefined, 20_000);
    offsetMs = 0;
    assert.deepEqual(await keys(), ['step_stalled:proc1']);
    const stalled = lines.find((l) => l.alert === 'step_stalled');
    assert.match(String(stalled?.msg), /^ALERT proc1: 5 documents ready and none claimed for 1m \d\ds \(site lyon runs it; never done yet\)$/);
    assert.match(String(stalled?.action), /lyon's agent/);

    // Lyon's runs, started by modane's trigger, fail the way a refused login does: three in a row.
    const recorder = new TriggerRecorder(modaneDb(), { site: 'modane', agent: 'modane-1', host: hostname() }, silentLogger());
    const triggers = new RemoteTriggers(config, 'modane', silentLogger(), { local: true, intervalMs: 0, recorder });
    const lyon = triggers.triggers.get('lyon');
    assert.ok(lyon, "modane's agent triggers lyon");
    const runOnce = async () => {
      lyon.poke();
      await lyon.whenIdle();
      await recorder.idle();
    };
    for (let i = 0; i < 2; i++) await runOnce();
    assert.deepEqual(await keys(), ['step_stalled:proc1'], 'two failures in a row are not yet failing_runs = 3');
    await runOnce();
    const failing = (await coordinatorRound(ctx, monitor, ++round)).alerts.find((a) => a.key === 'site_failing:lyon:runs');
    assert.ok(failing, 'site_failing:lyon:runs raised');
    assert.match(
      failing.message,
      /^lyon: 3 runs failed in \d+s: not authorised: Name or password is incorrect\. \(started by modane\/modane-1; last exit 1, \d+s ago\)$/,
    );
    assert.match(failing.action, /refuses lyon's login/);

    // Every channel says the same: the hook, mesh status, /metrics and the page.
    await tracker.idle();
    assert.deepEqual(
      hookEvents()
        .map((e) => e.key)
        .sort(),
      ['site_failing:lyon:runs', 'step_stalled:proc1'],
    );
    assert.ok(hookEvents().every((e) => e.action.length > 20));
    const now = clock();
    const status = await meshStatus(config, open, now);
    const flows = await serverFlows(config, open, status, { now, windowMs: 3_600_000, hours: 0 });
    const text = formatStatus(status, { flows, alerts: await currentAlerts(config, open, status, flowsOf(flows), now) });
    assert.match(text, /alerts \(2\):\n {2}step_stalled since .*: proc1: 5 documents ready[^\n]*\n {4}what to do: Check that the runs of lyon's agent/);
    assert.match(text, /site_failing since .*: lyon: 3 runs failed .*\n {4}what to do: The runs of lyon's agent end before doing any work/);
    const metrics = (await metricsText(config, open, now)).body;
    assert.match(metrics, /couchmesh_alerts_active\{kind="step_stalled"\} 1/);
    assert.match(metrics, /couchmesh_alerts_active\{kind="site_failing"\} 1/);
    assert.match(metrics, /couchmesh_alerts_active\{kind="site_unheard"\} 0/);
    const snapshot = await buildSnapshot(config, open, { now, windowMs: 3_600_000, hours: 1 });
    assert.deepEqual(snapshot.alerts.map((a) => a.key).sort(), ['site_failing:lyon:runs', 'step_stalled:proc1']);

    // A run that ends well clears the failing site.
    await writeFile(join(dir, 'lyon-ok'), '');
    await runOnce();
    await triggers.stop();
    assert.deepEqual(await keys(), ['step_stalled:proc1']);

    // Lyon claims a document (a batch job queued) and is never heard from again: a live claim is not a stall, the silence is.
    const claimStart = secondsAgo(200);
    await step(
      kitDb(),
      (await kitDb().get<DaqDocument>(docs[0]._id)) as DaqDocument,
      {
        type: 'claim',
        step: 'proc1',
        mode: 'queue',
        site: 'lyon',
        agent: 'lyon-h',
        host: 'h',
        lease_until: new Date(Date.now() + 3_600_000).toISOString(),
        batch: { system: 'slurm', stdout: '/logs/job.out' },
      },
      claimStart,
    );
    assert.deepEqual(await keys(), ['site_unheard:lyon']);
    assert.match(tracker.active()[0].message, /^lyon holds 1 claim in flight but no agent of lyon has written a heartbeat$/);
    await kitDb().put({
      _id: 'mesh-agent:lyon:h:once',
      type: 'mesh-agent',
      site: 'lyon',
      agent: 'h:once',
      host: 'h',
      pid: 1,
      started: secondsAgo(2).toISOString(),
      last_seen: secondsAgo(1).toISOString(),
      state: 'stopped',
      running: [],
    });
    assert.deepEqual(await keys(), []);

    // Three of lyon's batch jobs lost since its last success (it never had one).
    for (const [i, n] of [1, 2, 3].entries()) {
      const doc = (await kitDb().get<DaqDocument>(docs[n]._id)) as DaqDocument;
      const queued = await step(
        kitDb(),
        doc,
        {
          type: 'claim',
          step: 'proc1',
          mode: 'queue',
          site: 'lyon',
          agent: 'lyon-h',
          host: 'h',
          lease_until: new Date(Date.now() + 3_600_000).toISOString(),
          batch: { system: 'slurm', id: String(10 + i), stdout: `/logs/job${i}.out`, submitted: secondsAgo(90 - i).toISOString() },
        },
        secondsAgo(90 - i),
      );
      await step(kitDb(), queued, { type: 'lost', step: 'proc1', by: 'lyon/lyon-h', reason: `batch job ${10 + i} failed` }, secondsAgo(80 - i));
    }
    const lost = (await coordinatorRound(ctx, monitor, ++round)).alerts.find((a) => a.key === 'site_failing:lyon:batch');
    assert.equal(lost?.message, 'lyon: 3 batch jobs lost since its last success: batch job 12 failed; never started, not counted (proc1 of run_lg23b000_003)');

    // Each hook is a process of its own: they end in any order.
    await tracker.idle();
    assert.deepEqual(
      hookEvents()
        .map((e) => `${e.state} ${e.key}`)
        .sort(),
      [
        'cleared site_failing:lyon:runs',
        'cleared site_unheard:lyon',
        'cleared step_stalled:proc1',
        'raised site_failing:lyon:batch',
        'raised site_failing:lyon:runs',
        'raised site_unheard:lyon',
        'raised step_stalled:proc1',
      ],
    );
  });

  it('raises replication_behind when a link is further behind than alerts.replication_behind_s', async () => {
    // A database of its own without replication jobs: kit never receives modane's marker, written 400 s ago.
    const lagging = parseMeshConfig({ ...raw, database: 'lagging' }, join(dir, 'lagging.json'));
    const openLagging = (site: SiteConfig, database?: string) => new Database({ url: site.server, database: database ?? lagging.database });
    for (const site of [lagging.sites.modane, lagging.sites.kit]) {
      await openLagging(site).ensure();
      await pushDesigns(openLagging(site), lagging);
    }
    await writeMarker(openLagging(lagging.sites.modane), 'modane', { by: 'coordinator/modane', now: secondsAgo(400), intervalS: 1 });
    const now = new Date();
    const status = await meshStatus(lagging, openLagging, now);
    const alerts = await currentAlerts(lagging, openLagging, status, [], now);
    assert.deepEqual(
      alerts.map((a) => a.key),
      ['replication_behind:modane->kit'],
    );
    assert.match(alerts[0].message, /^kit is 6m 4\ds behind modane \(limit 5m 00s; job on modane: \w+/);
  });
});
