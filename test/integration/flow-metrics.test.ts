import { placed } from '../support/records.js';
import * as files from '../../store/files.js';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { runAlertHook } from '../../coordinator/alert-hook.js';
import { flowStatus } from '../../coordinator/flow.js';
import { metricsText } from '../../coordinator/metrics.js';
import { Database } from '../../store/database.js';
import { type ServerProcess } from '../support/server-process.js';
import { type TestMesh, makeMesh, runMesh, seedDocuments, serverForSuite, spawnMeshProcess, startAgent, stopProcess, waitFor } from '../support/mesh.js';
import { testFolder } from '../support/folders.js';
import { historyTo } from '../../core/provenance.js';

/** Rewrites the test mesh's config file with `extra` keys (targets, alerts) and returns the parsed config. */
async function withConfig(mesh: TestMesh, extra: Record<string, unknown>): Promise<MeshConfig> {
  const raw = { ...JSON.parse(await readFile(mesh.configFile, 'utf8')), ...extra };
  await writeFile(mesh.configFile, JSON.stringify(raw, null, 2));
  return parseMeshConfig(raw, mesh.configFile);
}

const NOW = new Date('2026-11-27T12:30:00.000Z');
const at = (hhmm: string, day = '2026-11-27') => new Date(`${day}T${hhmm}:00.000Z`);
const plus = (date: Date, minutes: number) => new Date(date.getTime() + minutes * 60_000);
const iso = (date: Date) => date.toISOString();

function done(finished: Date, duration = 1) {
  return { ok: true, attempts: 1, site: 'alpha', agent: 'seed', started: iso(plus(finished, -1)), finished: iso(finished), duration_s: duration };
}

function doc(id: string, closed: Date, status: string, records: Record<string, unknown>) {
  return {
    _id: id,
    type: 'daqdocument',
    run_name: 'lg23b002',
    file_number: Number(id.slice(-3)),
    file: `/daq/${id}`,
    size_in_bytes: 1,
    date_closed: iso(closed),
    status,
    history: historyTo(status, ['proc0', 'proc1', 'proc2']),
    ...placed(records),
  };
}

/**
 * Known times, all relative to NOW (12:30): ten files i = 1..10 closed at 09:30+i min, proc0
 * done i min later, proc1 done 10·i min after proc0 (run time 10·i s); one file done at 08:xx and
 * one two days ago (outside the window and the chart); A closed at 11:00 and untouched; B closed
 * at 12:00, proc0 done 12:05, proc1 in progress; C bad; D closed 06:00, proc0 done 06:10, proc1 failed.
 */
async function seedFlow(db: Database): Promise<void> {
  const docs: object[] = [];
  for (let i = 1; i <= 10; i++) {
    const closed = plus(at('09:30'), i);
    const p0 = plus(closed, i);
    const p1 = plus(p0, 10 * i);
    docs.push(doc(`run_lg23b002_${String(i).padStart(3, '0')}`, closed, 'good', { proc0: done(p0), proc1: done(p1, 10 * i) }));
  }
  docs.push(doc('run_lg23b002_020', at('08:00'), 'good', { proc0: done(at('08:05')), proc1: done(at('08:20')) }));
  docs.push(doc('run_lg23b002_021', at('08:00', '2026-11-25'), 'good', { proc0: done(at('08:05', '2026-11-25')), proc1: done(at('08:20', '2026-11-25')) }));
  docs.push(doc('run_lg23b002_030', at('11:00'), 'closed', {}));
  docs.push(
    doc('run_lg23b002_031', at('12:00'), 'proc1 in progress', {
      proc0: done(at('12:05')),
      proc1: { attempts: 1, site: 'alpha', agent: 'seed', host: 'h', started: iso(at('12:06')), lease_until: iso(at('12:40')) },
    }),
  );
  docs.push(doc('run_lg23b002_032', at('01:00'), 'bad', { reason: 'seeded as bad' }));
  docs.push(
    doc('run_lg23b002_033', at('06:00'), 'proc1 failed', {
      proc0: done(at('06:10')),
      proc1: { ok: false, attempts: 3, site: 'alpha', agent: 'seed', reason: 'exited with 3', exit_code: 3 },
    }),
  );
  const results = await db.bulk(docs);
  assert.deepEqual(
    results.filter((r) => r.error),
    [],
    'every seeded document accepted by validate_doc_update',
  );
}

/** The Prometheus text format, strictly: every sample belongs to a declared metric; returns `name{labels}` → value. */
function parsePrometheus(text: string): Map<string, number> {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3], /^(counter|gauge|histogram|summary|untyped)$/);
        types.set(meta[2], meta[3]);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(sample, `not a Prometheus sample line: ${line}`);
    assert.ok(types.has(sample[1]), `sample of an undeclared metric: ${line}`);
    samples.set(`${sample[1]}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return samples;
}

describe('flow, latency targets, metrics and alerts on a real embedded server', function () {
  this.timeout(300_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('flowStatus counts files per hour and gives p50/p95 per stage and the late files', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const config = await withConfig(mesh, { targets: { proc0: '10m', proc1: '1h' } });
    await seedFlow(mesh.db);
    const flow = await flowStatus(config, mesh.db, { now: NOW, windowMs: 3 * 3600_000, hours: 4 });

    assert.equal(flow.window_s, 10_800);
    assert.deepEqual(flow.completed.proc0, [
      { hour: '2026-11-27T09', count: 10 },
      { hour: '2026-11-27T10', count: 0 },
      { hour: '2026-11-27T11', count: 0 },
      { hour: '2026-11-27T12', count: 1 },
    ]);
    assert.deepEqual(
      flow.completed.proc1.map((h) => h.count),
      [2, 5, 3, 0],
    );

    const [p0, p1] = flow.latency;
    assert.deepEqual([p0.stage, p0.from, p1.stage, p1.from], ['proc0', 'closed', 'proc1', 'proc0']);
    // proc0: stages 1..10 min and B's 5 min; none over 10 min (10 min exactly is on target); A not done after 90 min.
    assert.deepEqual([p0.count, p0.sample, p0.capped, p0.p50_s, p0.p95_s, p0.target_s], [11, 11, false, 300, 600, 600]);
    assert.equal(p0.late_count, 1);
    assert.deepEqual(
      p0.late.map((l) => [l.doc, l.done, l.latency_s]),
      [['run_lg23b002_030', false, 5400]],
    );
    // proc1: stages 10·i min, from close 11·i min, run 10·i s; late: D and A not done, then i = 10..6 done over 1 h.
    assert.deepEqual(
      [p1.count, p1.p50_s, p1.p95_s, p1.close_p50_s, p1.close_p95_s, p1.run_p50_s, p1.run_p95_s, p1.target_s],
      [10, 3000, 6000, 3300, 6600, 50, 100, 3600],
    );
    assert.equal(p1.late_count, 7);
    assert.deepEqual(
      p1.late.map((l) => [l.doc, l.done, l.latency_s]),
      [
        ['run_lg23b002_033', false, 6.5 * 3600],
        ['run_lg23b002_030', false, 5400],
        ...[10, 9, 8, 7, 6].map((i) => [`run_lg23b002_${String(i).padStart(3, '0')}`, true, 660 * i]),
      ],
    );
    assert.deepEqual([p1.late[2].run, p1.late[2].file, p1.late[2].closed], ['lg23b002', 10, iso(plus(at('09:30'), 10))]);

    // Capped: the newest rows only, and the result says so.
    const capped = await flowStatus(config, mesh.db, { now: NOW, windowMs: 3 * 3600_000, hours: 0, maxRows: 4, lateLimit: 1 });
    const c1 = capped.latency[1];
    assert.deepEqual([c1.count, c1.sample, c1.capped, c1.p50_s, c1.late.length, c1.late_count], [10, 4, true, 4800, 1, 6]);
    assert.deepEqual(capped.completed, { proc0: [], proc1: [] });
    // A window that holds nothing: no quantiles, only the files still pending.
    const empty = await flowStatus(config, mesh.db, { now: new Date('2026-11-28T12:00:00.000Z'), windowMs: 600_000, hours: 1 });
    assert.deepEqual([empty.latency[1].count, empty.latency[1].p50_s, empty.latency[1].late_count], [0, null, 3]);
  });

  it('metricsText is Prometheus text with the counts, latencies, agent counters and active alerts', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const config = await withConfig(mesh, { targets: { proc0: '10m', proc1: '1h' }, alerts: { agent_silent_s: 60, window_s: 10_800 } });
    await seedFlow(mesh.db);
    const beat = (agent: string, lastSeen: Date, state: string, counters?: object) => ({
      _id: `mesh-agent:alpha:${agent}`,
      type: 'mesh-agent',
      site: 'alpha',
      agent,
      host: 'h1',
      pid: 1,
      started: iso(at('09:00')),
      last_seen: iso(lastSeen),
      state,
      running: [],
      ...(counters ? { counters } : {}),
    });
    await mesh.db.bulk([
      beat('ghost', at('12:20'), 'running', { claims: 5, claim_conflicts: 2, retries: 1, steps_ok: 4, steps_failed: 1 }),
      beat('fresh', at('12:29'), 'running', { claims: 7, claim_conflicts: 0, retries: 0, steps_ok: 7, steps_failed: 0 }),
      beat('gone', at('08:00'), 'stopped'),
    ]);
    const { contentType, body } = await metricsText(config, (site, database) => new Database({ url: site.server, database: database ?? config.database }), NOW);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    const m = parsePrometheus(body);
    const get = (key: string) => {
      assert.ok(m.has(key), `${key} missing from:\n${body}`);
      return m.get(key);
    };
    assert.equal(get('couchmesh_server_up{server="alpha"}'), 1);
    assert.equal(get('couchmesh_documents{server="alpha",status="good"}'), 12);
    assert.equal(get('couchmesh_documents{server="alpha",status="proc1 failed"}'), 1);
    assert.equal(get('couchmesh_step_documents{server="alpha",step="proc0",state="done"}'), 14);
    assert.equal(get('couchmesh_step_documents{server="alpha",step="proc0",state="ready"}'), 1);
    assert.equal(get('couchmesh_step_documents{server="alpha",step="proc1",state="in_progress"}'), 1);
    assert.equal(get('couchmesh_step_documents{server="alpha",step="proc1",state="failed"}'), 1);
    assert.equal(get('couchmesh_stage_completed{server="alpha",stage="proc1"}'), 10);
    assert.equal(get('couchmesh_stage_latency_seconds{server="alpha",stage="proc1",quantile="0.95"}'), 6000);
    assert.equal(get('couchmesh_latency_from_close_seconds{server="alpha",stage="proc1",quantile="0.5"}'), 3300);
    assert.equal(get('couchmesh_step_duration_seconds{server="alpha",step="proc1",quantile="0.5"}'), 50);
    assert.equal(get('couchmesh_latency_target_seconds{stage="proc1"}'), 3600);
    assert.equal(get('couchmesh_late_files{server="alpha",stage="proc1"}'), 7);
    assert.equal(get('couchmesh_agent_claims_total{site="alpha",agent="ghost",host="h1"}'), 5);
    assert.equal(get('couchmesh_agent_claim_conflicts_total{site="alpha",agent="ghost",host="h1"}'), 2);
    assert.equal(get('couchmesh_agent_retries_total{site="alpha",agent="ghost",host="h1"}'), 1);
    assert.equal(get('couchmesh_agent_steps_total{site="alpha",agent="ghost",host="h1",result="failed"}'), 1);
    assert.equal(get('couchmesh_agent_steps_total{site="alpha",agent="fresh",host="h1",result="ok"}'), 7);
    assert.equal(get('couchmesh_agent_heartbeat_age_seconds{site="alpha",agent="ghost",host="h1"}'), 600);
    assert.equal(get('couchmesh_agent_last_seen_timestamp_seconds{site="alpha",agent="fresh",host="h1"}'), at('12:29').getTime() / 1000);
    assert.equal(get('couchmesh_agent_running{site="alpha",agent="gone",host="h1"}'), 0);
    assert.equal(get('couchmesh_double_claims_detected_total'), 0);
    // ghost is silent (10 min > 60 s); gone stopped; proc0 (A) and proc1 are late.
    assert.equal(get('couchmesh_alerts_active{kind="agent_silent"}'), 1);
    assert.equal(get('couchmesh_alerts_active{kind="latency_target"}'), 2);
    // Its own registry: nothing from prom-client's global one (process_*, nodejs_*).
    assert.ok(![...m.keys()].some((k) => k.startsWith('process_') || k.startsWith('nodejs_')));
  });

  it('two agents racing publish their claims, conflicts, retries and steps in their heartbeats', async () => {
    const counterDir = testFolder('mesh-failures-');
    const mesh = await makeMesh(server.url, {
      steps: ['proc0'],
      max_attempts: 10,
      stepArgs: () => ['--fail-until', '5', '--counter', join(counterDir, 'failures')],
    });
    await seedDocuments(mesh, 200);
    const agents = ['racer-a', 'racer-b'].map((name) => startAgent(mesh, name, ['--concurrency', '4']));
    await waitFor('every document done', async () => (await files.doneCount(mesh.db, 'proc0')) === 200, 240_000, 250);
    await Promise.all(agents.map((a) => stopProcess(a)));

    type Counters = { claims: number; claim_conflicts: number; retries: number; steps_ok: number; steps_failed: number };
    const beats = await Promise.all(['racer-a', 'racer-b'].map((name) => mesh.db.get<{ state: string; counters: Counters }>(`mesh-agent:alpha:${name}`)));
    const sum = (key: keyof Counters) => beats.reduce((n, b) => n + (b?.counters[key] ?? 0), 0);
    const tails = async () =>
      (
        await Promise.all(
          ['racer-a', 'racer-b'].map(
            async (name) =>
              `${name}:\n${(await readFile(join(mesh.dir, `${name}.log`), 'utf8'))
                .split('\n')
                .filter((l) => !l.includes('"steps"'))
                .slice(-30)
                .join('\n')}`,
          ),
        )
      ).join('\n');
    assert.ok(
      beats.every((b) => b?.state === 'stopped'),
      `final heartbeats written (states ${beats.map((b) => b?.state).join(', ')})\n${await tails()}`,
    );
    // Five executions failed on purpose, each retried once: exactly 205 claims, 200 ok.
    assert.equal(sum('steps_failed'), 5);
    assert.equal(sum('retries'), 5);
    assert.equal(sum('steps_ok'), 200);
    assert.equal(sum('claims'), 205);
    assert.ok(sum('claim_conflicts') > 0, 'two agents on the same 200 ready documents lose some races');
    // The heartbeat says what the agent itself logged when it stopped.
    for (const [i, name] of ['racer-a', 'racer-b'].entries()) {
      const log = await readFile(join(mesh.dir, `${name}.log`), 'utf8');
      const stopped = log
        .split('\n')
        .filter((l) => l.includes('"agent stopped"'))
        .map((l) => JSON.parse(l))[0];
      assert.ok(stopped, `${name} logged its counters`);
      assert.equal(beats[i]?.counters.claim_conflicts, stopped.lost_races + stopped.taken_elsewhere);
      assert.equal(beats[i]?.counters.claims, stopped.claimed);
    }
  });

  it('mesh coordinator logs each alert once at warn, runs the hook, logs the clearing; mesh status shows them', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const hookLog = join(mesh.dir, 'hook.jsonl');
    const hook = join(mesh.dir, 'hook.mjs');
    await writeFile(hook, "import { appendFileSync, readFileSync } from 'node:fs';\nappendFileSync(process.argv[2], readFileSync(0, 'utf8'));\n");
    await withConfig(mesh, { targets: { proc0: '10m' }, alerts: { agent_silent_s: 60, hook: [process.execPath, hook, hookLog] } });
    const now = Date.now();
    await mesh.db.bulk([
      doc('run_lg23b002_040', new Date(now - 2 * 3600_000), 'closed', {}),
      {
        _id: 'mesh-agent:alpha:ghost',
        type: 'mesh-agent',
        site: 'alpha',
        agent: 'ghost',
        host: 'h1',
        pid: 1,
        started: iso(new Date(now - 3600_000)),
        last_seen: iso(new Date(now - 600_000)),
        state: 'running',
        running: [],
      },
    ]);

    const human = await runMesh(['--config', mesh.configFile, 'status']);
    // Alerts hold: exit status 1 (something for the crew), the alerts in the first line too.
    assert.equal(human.status, 1, human.stderr);
    for (const part of [/proc0 late for its target/, /agent alpha\/ghost silent \d+ min/]) assert.match(human.stdout.split('\n')[0], part);
    assert.match(human.stdout, /flow on alpha, files finished in the last 1h 00m:/);
    assert.match(human.stdout, /proc0 .* 10m 00s +1 +LATE/);
    assert.match(human.stdout, /late proc0: run_lg23b002_040 2h 00m since DAQ close, not done yet/);
    // Each alert with what to do about it.
    assert.match(
      human.stdout,
      /alerts \(2\):\n {2}latency_target since .*proc0 missed its target of 10m 00s[^\n]*\n {4}what to do: [^\n]+\n {2}agent_silent since .*ghost[^\n]*\n {4}what to do: Check the agent's process on h1/,
    );
    const json = JSON.parse((await runMesh(['--config', mesh.configFile, 'status', '--json'])).stdout);
    assert.equal(json.flow[0].site, 'alpha');
    assert.equal(json.flow[0].flow.latency[0].late_count, 1);
    assert.deepEqual(json.alerts.map((a: { key: string }) => a.key).sort(), ['agent_silent:alpha/ghost', 'latency_target:proc0']);

    const logFile = join(mesh.dir, 'coordinator.log');
    const lines = async () =>
      (await readFile(logFile, 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string; round?: number });
    const coordinator = spawnMeshProcess(['--config', mesh.configFile, 'coordinator', '--interval', '0.3'], { logFile });
    await waitFor('three rounds', async () => (await lines()).some((l) => l.round === 3), 60_000, 100);
    await mesh.db.put({ ...(await mesh.db.get<{ _id: string; _rev: string }>('run_lg23b002_040'))!, _deleted: true });
    await waitFor('the late alert cleared', async () => (await lines()).some((l) => l.msg.startsWith('alert cleared')), 60_000, 100);
    await waitFor('a round after the clearing', async () => {
      const all = await lines();
      const cleared = all.findIndex((l) => l.msg.startsWith('alert cleared'));
      return all.slice(cleared).some((l) => l.round !== undefined);
    });
    assert.equal(await stopProcess(coordinator), 0);

    const all = await lines();
    const alertLines = all.filter((l) => l.msg.startsWith('ALERT '));
    assert.deepEqual(
      alertLines.map((l) => l.level),
      [40, 40],
      'two alerts, each logged once at warn',
    );
    assert.ok(
      alertLines.some((l) =>
        /^ALERT proc0 missed its target of 10m 00s from DAQ close for 1 file \(1 not done yet\); worst run_lg23b002_040: 2h 00m and counting$/.test(l.msg),
      ),
    );
    assert.ok(alertLines.some((l) => /^ALERT agent alpha\/ghost on h1 silent for 10m/.test(l.msg)));
    const cleared = all.filter((l) => l.msg.startsWith('alert cleared'));
    assert.equal(cleared.length, 1);
    assert.match(cleared[0].msg, /proc0 missed its target/);
    assert.ok(
      all
        .filter((l) => l.round !== undefined)
        .every((l) =>
          / alerts (agent_silent:alpha\/ghost|latency_target:proc0, agent_silent:alpha\/ghost|agent_silent:alpha\/ghost, latency_target:proc0)$/.test(l.msg),
        ),
    );

    const events = (await readFile(hookLog, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { state: string; key: string; kind: string; since: string });
    assert.deepEqual(events.map((e) => `${e.state} ${e.key}`).sort(), [
      'cleared latency_target:proc0',
      'raised agent_silent:alpha/ghost',
      'raised latency_target:proc0',
    ]);
    assert.ok(events.every((e) => typeof e.since === 'string' && e.kind));
  });

  it('a bad target or alert setting exits 2 naming the key, the value and the expected form', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'], push: false });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    await writeFile(mesh.configFile, JSON.stringify({ ...raw, targets: { proc1: '2 hours', proc9: '1h' }, alerts: { hook: 'notify-shift --now' } }));
    for (const args of [['status'], ['coordinator', '--once']]) {
      const run = await runMesh(['--config', mesh.configFile, ...args]);
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /targets\.proc1 is "2 hours", expected a duration such as "90s", "30m", "2h", "1d"/);
      assert.match(run.stderr, /targets\.proc9 is "1h", expected a target for one of the steps \(proc0, proc1\); there is no step "proc9"/);
      assert.match(run.stderr, /alerts\.hook is "notify-shift --now", expected an argument vector/);
    }
  });

  it('the alert hook gets the event on stdin; a failing, hanging or missing hook is reported, not fatal', async () => {
    const dir = testFolder('mesh-hook-');
    const script = (name: string, body: string) => writeFile(join(dir, name), body).then(() => join(dir, name));
    const echo = await script('echo.mjs', "import { readFileSync, writeFileSync } from 'node:fs';\nwriteFileSync(process.argv[2], readFileSync(0, 'utf8'));\n");
    const failing = await script('fail.mjs', "console.error('no route to pager; giving up');\nprocess.exit(4);\n");
    const hanging = await script('hang.mjs', 'setInterval(() => {}, 1000);\n');
    const event = { kind: 'agent_silent', key: 'agent_silent:a/b', message: "it's quiet; $(rm -rf /)", since: 'x', state: 'raised', at: 'y' };
    assert.deepEqual(await runAlertHook([process.execPath, echo, join(dir, 'got.json')], event, 10_000), { ok: true });
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'got.json'), 'utf8')), event);
    const failed = await runAlertHook([process.execPath, failing], event, 10_000);
    assert.equal(failed.ok, false);
    assert.match(failed.reason ?? '', /exited with 4: no route to pager; giving up/);
    const started = Date.now();
    assert.deepEqual(await runAlertHook([process.execPath, hanging], event, 300), { ok: false, reason: 'killed after 0.3 s' });
    assert.ok(Date.now() - started < 5000);
    const missing = await runAlertHook([join(dir, 'no-such-hook')], event, 10_000);
    assert.match(missing.reason ?? '', /^cannot start .*no-such-hook: .*ENOENT/);
  });
});
