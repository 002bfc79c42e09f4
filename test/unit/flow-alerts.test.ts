import assert from 'node:assert/strict';
import { parseMeshConfig } from '../../config/load.js';
import { type Alert, AlertTracker, evaluateAlerts, silentFor } from '../../coordinator/alerts.js';
import { type FlowStatus, type StageLatency, hourOf, lastHours } from '../../coordinator/flow.js';
import { percentile } from '../../coordinator/percentile.js';
import type { AgentStatus, MeshStatus } from '../../coordinator/status.js';
import { MeshError } from '../../core/errors.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { silentLogger } from '../../core/log.js';

const base = {
  sites: { alpha: { server: 'http://127.0.0.1:5984', reachable: true, long_running: true } },
  ingest: { site: 'alpha' },
  steps: [
    { name: 'proc0', site: 'alpha', run: ['true'], out: '/o/{run_name}_{file_number}' },
    { name: 'proc1', site: 'alpha', run: ['true'], out: '/o/{run_name}_{file_number}' },
  ],
};

function configError(extra: Record<string, unknown>): string {
  try {
    parseMeshConfig({ ...base, ...extra }, 'test.json');
  } catch (error) {
    assert.ok(error instanceof MeshError);
    assert.equal(error.code, 'CONFIG_INVALID');
    return error.message;
  }
  assert.fail('the config was accepted');
}

describe('durations', () => {
  it('parses the units and their sums', () => {
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('30m'), 1800);
    assert.equal(parseDuration('2h'), 7200);
    assert.equal(parseDuration('1d'), 86_400);
    assert.equal(parseDuration('1h30m'), 5400);
    assert.equal(parseDuration('1.5h'), 5400);
  });
  it('refuses everything else', () => {
    for (const bad of ['', '2', '2 h', '2hours', '-5m', '0s', '0h0m', 'h', '1w', '1h 30m', 7200, null, undefined, {}])
      assert.equal(parseDuration(bad), undefined, String(bad));
  });
  it('formats with two units at most', () => {
    assert.equal(formatDuration(42.4), '42s');
    assert.equal(formatDuration(303), '5m 03s');
    assert.equal(formatDuration(7620), '2h 07m');
    assert.equal(formatDuration(273_600), '3d 04h');
    assert.equal(formatDuration(null), '-');
  });
});

describe('targets and alerts in the config', () => {
  it('turns targets into seconds and keeps the alert settings', () => {
    const config = parseMeshConfig(
      { ...base, targets: { proc1: '2h' }, alerts: { agent_silent_s: 60, hook: ['/bin/notify', '--x'], stalled_s: 90, failing_runs: 5 } },
      'test.json',
    );
    assert.deepEqual(config.targets, { proc1: 7200 });
    assert.deepEqual(config.alerts, {
      agent_silent_s: 60,
      window_s: 3600,
      hook_timeout_s: 10,
      hook: ['/bin/notify', '--x'],
      stalled_s: 90,
      failing_runs: 5,
      unheard_s: 600,
      replication_behind_s: 300,
    });
    assert.ok(Object.isFrozen(config.targets));
  });
  it('has no targets and default alert settings when none are given', () => {
    const config = parseMeshConfig(base, 'test.json');
    assert.deepEqual(config.targets, {});
    assert.equal(config.alerts.agent_silent_s, 120);
    assert.equal(config.alerts.hook, undefined);
    // The stuck-chain alerts work without any target.
    assert.deepEqual([config.alerts.stalled_s, config.alerts.failing_runs, config.alerts.unheard_s, config.alerts.replication_behind_s], [600, 3, 600, 300]);
  });
  it('refuses stuck-chain thresholds that are not positive (failing_runs: an integer)', () => {
    const message = configError({ alerts: { stalled_s: 0, failing_runs: 2.5, unheard_s: '10m', replication_behind_s: -1 } });
    assert.match(message, /alerts\.stalled_s is 0/);
    assert.match(message, /alerts\.failing_runs is 2\.5, expected an integer from 1 to 1000/);
    assert.match(message, /alerts\.unheard_s is "10m"/);
    assert.match(message, /alerts\.replication_behind_s is -1/);
  });
  it('names the unknown step, the bad duration, a silence limit under the heartbeat and a hook that is not an argument vector', () => {
    const message = configError({ targets: { proc7: '1h', proc1: '2 hours' }, alerts: { agent_silent_s: 5, hook: 'notify-shift --now' } });
    assert.match(message, /targets\.proc7 .*no step "proc7"/);
    assert.match(message, /targets\.proc1 is "2 hours", expected a duration such as "90s"/);
    assert.match(message, /alerts\.agent_silent_s is 5, expected more seconds than agent\.heartbeat_s \(10\)/);
    assert.match(message, /alerts\.hook is "notify-shift --now", expected an argument vector/);
  });
  it('refuses targets that are not an object, numbers as durations, and unknown alert keys', () => {
    assert.match(configError({ targets: ['proc1', '2h'] }), /targets is \["proc1","2h"\], expected an object/);
    assert.match(configError({ targets: { proc1: 7200 } }), /targets\.proc1 is 7200, expected a duration/);
    assert.match(configError({ alerts: { silent: 10 } }), /alerts\.silent/);
  });
});

describe('percentiles (nearest rank)', () => {
  it('gives values of the list', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 95), 95);
    assert.equal(percentile(values, 100), 100);
    assert.equal(percentile(values, 0), 1);
    assert.equal(percentile([7], 95), 7);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile([1, 2, 3, 4], 95), 4);
  });
  it('is null for nothing and ignores non-finite values', () => {
    assert.equal(percentile([], 50), null);
    assert.equal(percentile([Number.NaN, 3, Number.POSITIVE_INFINITY], 50), 3);
    assert.throws(() => percentile([1], 101), RangeError);
  });
});

describe('hours of the chart', () => {
  it('lists the last hours, oldest first, current hour last', () => {
    const now = new Date('2026-11-27T05:42:00.000Z');
    assert.equal(hourOf(now), '2026-11-27T05');
    assert.deepEqual(lastHours(now, 3), ['2026-11-27T03', '2026-11-27T04', '2026-11-27T05']);
    assert.deepEqual(lastHours(new Date('2026-11-27T00:10:00Z'), 2), ['2026-11-26T23', '2026-11-27T00']);
    assert.deepEqual(lastHours(now, 0), []);
  });
});

describe('alert evaluation', () => {
  const config = parseMeshConfig({ ...base, targets: { proc1: '1h' }, alerts: { agent_silent_s: 60 } }, 'test.json');
  const now = new Date('2026-11-27T06:00:00.000Z');
  const agent = (name: string, lastSeen: string, state = 'running'): AgentStatus => ({
    site: 'alpha',
    agent: name,
    host: 'h',
    state,
    last_seen: lastSeen,
    age_s: 0,
    running: [],
    server: 'alpha',
  });
  const status = (agents: AgentStatus[]): MeshStatus => ({
    generated: now.toISOString(),
    database: 'datadb',
    databases: [],
    agents,
    replication: [],
    double_claims: { detected: 0, resolved: 0 },
  });
  const stage = (step: string, over: Partial<StageLatency> = {}): StageLatency => ({
    stage: step,
    from: 'closed',
    p50_s: null,
    p95_s: null,
    count: 0,
    target_s: null,
    close_p50_s: null,
    close_p95_s: null,
    run_p50_s: null,
    run_p95_s: null,
    sample: 0,
    capped: false,
    late_count: 0,
    late: [],
    ...over,
  });
  const flow = (latency: StageLatency[]): FlowStatus => ({ window_s: 3600, row_cap: 2000, completed: {}, latency });

  it('reports running agents silent past the limit, not stopped ones nor recent ones', () => {
    const alerts = evaluateAlerts(
      status([agent('quiet', '2026-11-27T05:59:30.000Z'), agent('gone', '2026-11-27T05:50:00.000Z'), agent('done', '2026-11-27T01:00:00.000Z', 'stopped')]),
      [],
      config,
      now,
    );
    assert.deepEqual(
      alerts.map((a) => a.key),
      ['agent_silent:alpha/gone'],
    );
    assert.equal(alerts[0].kind, 'agent_silent');
    assert.equal(alerts[0].since, '2026-11-27T05:50:00.000Z');
    assert.match(alerts[0].message, /silent for 10m 00s/);
  });

  it('reports a missed target once per step, merging the replicas, with when it became late', () => {
    const late = { doc: 'run_a_001', run: 'a', file: 1, latency_s: 5400, done: false, closed: '2026-11-27T04:30:00.000Z' };
    const lateDone = { doc: 'run_a_000', run: 'a', file: 0, latency_s: 4000, done: true, closed: '2026-11-27T04:00:00.000Z' };
    const flows = [
      flow([stage('proc0'), stage('proc1', { target_s: 3600, late_count: 2, late: [late, lateDone] })]),
      flow([stage('proc0'), stage('proc1', { target_s: 3600, late_count: 1, late: [{ ...late, latency_s: 5400 }] })]),
    ];
    const alerts = evaluateAlerts(status([]), flows, config, now);
    assert.equal(alerts.length, 1);
    assert.equal(alerts[0].key, 'latency_target:proc1');
    assert.equal(alerts[0].since, '2026-11-27T05:00:00.000Z');
    assert.match(alerts[0].message, /proc1 missed its target of 1h 00m from DAQ close for 2 files \(1 not done yet\); worst run_a_001: 1h 30m and counting/);
  });

  it('says nothing when every target is met and no target is set for the other steps', () => {
    const flows = [flow([stage('proc0', { late_count: 3 }), stage('proc1', { target_s: 3600, count: 10, close_p95_s: 3000 })])];
    assert.deepEqual(evaluateAlerts(status([agent('fresh', now.toISOString())]), flows, config, now), []);
  });
});

describe('alert tracker', () => {
  function recordingLogger() {
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = silentLogger();
    const record = (level: string) => (_obj: unknown, msg?: string) => void lines.push({ level, msg: String(msg) });
    return { lines, logger: Object.assign(Object.create(logger), { warn: record('warn'), info: record('info') }) };
  }
  const a: Alert = { kind: 'agent_silent', key: 'agent_silent:x/1', message: 'agent x/1 silent', action: 'check x', since: '2026-11-27T05:00:00.000Z' };
  const b: Alert = {
    kind: 'latency_target',
    key: 'latency_target:proc1',
    message: 'proc1 late',
    action: 'look at the flow',
    since: '2026-11-27T05:10:00.000Z',
  };

  it('logs a new alert once at warn, keeps its first since, and logs its clearing once', () => {
    const { lines, logger } = recordingLogger();
    const tracker = new AlertTracker({ logger });
    const now = new Date('2026-11-27T06:00:00.000Z');
    assert.deepEqual(tracker.update([a], now).raised, [a]);
    assert.deepEqual(tracker.update([{ ...a, since: '2026-11-27T05:30:00.000Z', message: 'agent x/1 silent longer' }, b], now).raised, [b]);
    assert.deepEqual(
      tracker.active().map((x) => [x.key, x.since, x.message]),
      [
        [a.key, a.since, 'agent x/1 silent longer'],
        [b.key, b.since, b.message],
      ],
    );
    assert.deepEqual(
      tracker.update([b], now).cleared.map((x) => x.key),
      [a.key],
    );
    tracker.update([b], now);
    assert.deepEqual(lines, [
      { level: 'warn', msg: 'ALERT agent x/1 silent' },
      { level: 'warn', msg: 'ALERT proc1 late' },
      { level: 'info', msg: 'alert cleared: agent x/1 silent longer' },
    ]);
  });
});

describe('coordinator/alerts: one definition of a silent agent', () => {
  const config = { alerts: { agent_silent_s: 60 } } as Parameters<typeof silentFor>[1];
  const now = new Date('2026-12-01T12:00:00.000Z');
  const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString();
  it('a running agent is silent past alerts.agent_silent_s, whatever its heartbeat period; a stopped one never', () => {
    assert.equal(silentFor({ state: 'running', last_seen: ago(59) }, config, now), undefined);
    assert.equal(silentFor({ state: 'running', last_seen: ago(61) }, config, now), 61);
    assert.equal(silentFor({ state: 'idle', last_seen: ago(3600) }, config, now), 3600);
    assert.equal(silentFor({ state: 'stopped', last_seen: ago(3600) }, config, now), undefined);
    assert.equal(silentFor({ state: 'running', last_seen: 'never' }, config, now), undefined);
  });
});
