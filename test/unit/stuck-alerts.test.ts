/**
 * The stuck-chain alerts, pure (coordinator/stuck-alerts.ts): each fires past its limit and not
 * before, replicas merge, and the trigger's account of a run (agents/trigger-record.ts) keeps
 * the failures in a row and the reason the run gave.
 */
import assert from 'node:assert/strict';
import { parseMeshConfig } from '../../config/load.js';
import type { AlertEvidence, ServerEvidence, StepEvidence } from '../../coordinator/alert-evidence.js';
import { readySince } from '../../coordinator/alert-evidence.js';
import { evaluateAlerts } from '../../coordinator/alerts.js';
import type { DatabaseStatus, MeshStatus, ReplicationStatus } from '../../coordinator/status.js';
import { RunWords, nextRecord } from '../../agents/trigger-record.js';
import type { DaqDocument } from '../../core/document.js';
import type { TriggerRecord } from '../../store/triggers.js';

const config = parseMeshConfig(
  {
    sites: {
      modane: { server: 'http://127.0.0.1:1', reachable: false, long_running: true },
      kit: { server: 'http://127.0.0.1:2', reachable: true, long_running: true },
      lyon: {
        server: 'http://127.0.0.1:2',
        credentials_of: 'kit',
        reachable: true,
        long_running: false,
        batch: { system: 'slurm' },
        ssh: { host: '127.0.0.1', port: 22, user: 'u', identity_file: '/k', host_key_sha256: `SHA256:${'A'.repeat(43)}` },
      },
    },
    ingest: { site: 'modane' },
    steps: [
      { name: 'proc0', site: 'modane', run: ['true'], out: '/o/{run_name}_{file_number}' },
      { name: 'proc1', site: 'lyon', run: ['true'], out: '/o1/{run_name}_{file_number}' },
    ],
    alerts: { stalled_s: 600, failing_runs: 3, unheard_s: 600, replication_behind_s: 300 },
  },
  'test.json',
);
const NOW = new Date('2026-11-27T06:00:00.000Z');
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString();

function db(site: string, ready: Record<string, number>): DatabaseStatus {
  const steps: DatabaseStatus['steps'] = {};
  for (const step of ['proc0', 'proc1']) steps[step] = { done: 0, ready: ready[step] ?? 0, queued: 0, in_progress: 0, failed: 0 };
  return { site, url: '', reachable: true, doc_count: 0, by_status: {}, steps, conflicts: 0, in_flight: [], failed: [] };
}

function status(over: Partial<MeshStatus> = {}): MeshStatus {
  return {
    generated: NOW.toISOString(),
    database: 'datadb',
    databases: [db('modane', { proc1: 80 }), db('kit', { proc1: 79 })],
    agents: [],
    replication: [],
    double_claims: { detected: 0, resolved: 0 },
    ...over,
  };
}

const idle: StepEvidence = { waiting_since: null, live_claims: 0, newest_claim: null, last_finished: null };
function server(site: string, over: Partial<ServerEvidence> = {}): ServerEvidence {
  return { site, steps: { proc0: idle, proc1: idle }, claims: {}, lost: {}, triggers: [], ...over };
}
const keys = (s: MeshStatus, e: AlertEvidence) => evaluateAlerts(s, [], config, NOW, e).map((a) => a.key);

describe('stuck-chain alerts', () => {
  it('step_stalled: ready documents nothing claimed for stalled_s; a live claim or a recent finish is a queue, not a stall', () => {
    const waiting = (s: number, extra: Partial<StepEvidence> = {}) => ({ proc0: idle, proc1: { ...idle, waiting_since: ago(s), ...extra } });
    assert.deepEqual(keys(status(), { servers: [server('modane', { steps: waiting(599) })] }), []);
    const alerts = evaluateAlerts(status(), [], config, NOW, { servers: [server('modane', { steps: waiting(720) }), server('kit', { steps: waiting(100) })] });
    assert.deepEqual(
      alerts.map((a) => [a.key, a.since]),
      [['step_stalled:proc1', ago(720)]],
      'since the step went idle, as the summary line says it ("proc1 stalled 12 min")',
    );
    assert.match(alerts[0].message, /^proc1: 80 documents ready and none claimed for 12m 00s \(site lyon runs it; never done yet\)$/);
    assert.match(alerts[0].action, /runs of lyon's agent .*by the agent of modane over SSH/);
    assert.deepEqual(keys(status(), { servers: [server('modane', { steps: waiting(720, { live_claims: 1 }) })] }), []);
    assert.deepEqual(
      keys(status(), { servers: [server('modane', { steps: waiting(720) }), server('kit', { steps: waiting(720, { last_finished: ago(30) }) })] }),
      [],
    );
    // Nothing ready on any server: nothing stalls, however old the sample.
    assert.deepEqual(keys(status({ databases: [db('modane', {}), db('kit', {})] }), { servers: [server('modane', { steps: waiting(9999) })] }), []);
  });

  const record = (target: string, runs: number, updated: string, reason = '401 unauthorized'): TriggerRecord => ({
    _id: `mesh-trigger:modane:${target}`,
    type: 'mesh-trigger',
    site: 'modane',
    target,
    agent: 'modane-1',
    host: 'h',
    updated,
    runs: 40,
    failures: runs,
    ...(runs > 0 ? { failing: { runs, since: ago(60), reason } } : {}),
    last: { started: ago(2), ended: updated, ok: runs === 0, how: runs === 0 ? 'exit 0' : 'exit 1' },
  });

  it('site_failing: the last failing_runs triggered runs ended badly, with the reason; the newest record decides', () => {
    assert.deepEqual(keys(status(), { servers: [server('modane', { triggers: [record('lyon', 2, ago(1))] })] }), []);
    const alerts = evaluateAlerts(status(), [], config, NOW, {
      servers: [server('modane', { triggers: [record('lyon', 29, ago(1), 'heartbeat (stopped): write mesh-agent:lyon:x: 401 unauthorized')] })],
    });
    assert.equal(alerts[0].key, 'site_failing:lyon:runs');
    assert.equal(
      alerts[0].message,
      'lyon: 29 runs failed in 59s: heartbeat (stopped): write mesh-agent:lyon:x: 401 unauthorized (started by modane/modane-1; last exit 1, 1s ago)',
    );
    assert.match(alerts[0].action, /refuses lyon's login/);
    // kit's replica is older: the success modane recorded since wins.
    assert.deepEqual(
      keys(status(), { servers: [server('modane', { triggers: [record('lyon', 0, ago(1))] }), server('kit', { triggers: [record('lyon', 9, ago(5))] })] }),
      [],
    );
  });

  it('site_failing: batch jobs lost since the last success; site_unheard: claims held while no agent of the site is heard from', () => {
    const lost = {
      count: 3,
      oldest_started: ago(300),
      newest: { doc: 'run_x_001', step: 'proc1', reason: 'batch job 12 failed', started: ago(30) },
      capped: false,
    };
    const alerts = evaluateAlerts(status(), [], config, NOW, { servers: [server('kit', { lost: { lyon: lost } })] });
    assert.deepEqual(
      alerts.map((a) => [a.key, a.message]),
      [['site_failing:lyon:batch', 'lyon: 3 batch jobs lost since its last success: batch job 12 failed (proc1 of run_x_001)']],
    );
    assert.deepEqual(keys(status(), { servers: [server('kit', { lost: { lyon: { ...lost, count: 2 } } })] }), []);

    const claims = { lyon: { count: 4, capped: false, newest_started: ago(700) } };
    const heard = (s: number) => [{ site: 'lyon', agent: 'l', host: 'h', state: 'stopped', last_seen: ago(s), age_s: s, running: [], server: 'kit' }];
    const unheard = evaluateAlerts(status({ agents: heard(650) }), [], config, NOW, { servers: [server('kit', { claims })] });
    assert.deepEqual(
      unheard.map((a) => [a.key, a.message, a.since]),
      [['site_unheard:lyon', 'lyon holds 4 claims in flight but none of its agents was heard from for 10m 50s', ago(50)]],
    );
    assert.deepEqual(keys(status({ agents: heard(100) }), { servers: [server('kit', { claims })] }), []);
    assert.match(evaluateAlerts(status(), [], config, NOW, { servers: [server('kit', { claims })] })[0].message, /no agent of lyon has written a heartbeat/);
  });

  it('replication_behind: a link further behind than replication_behind_s', () => {
    const link = (behind: number | null): ReplicationStatus => ({
      from: 'modane',
      to: 'kit',
      on: 'modane',
      state: 'running',
      pending: null,
      lag_from: 'marker',
      behind_s: behind,
      marker_age_s: null,
      stalled: false,
    });
    assert.deepEqual(keys(status({ replication: [link(299), link(null)] }), { servers: [] }), []);
    const [alert] = evaluateAlerts(status({ replication: [link(400)] }), [], config, NOW, { servers: [] });
    assert.deepEqual([alert.key, alert.since], ['replication_behind:modane->kit', ago(400)]);
    assert.match(alert.message, /^kit is 6m 40s behind modane \(limit 5m 00s; job on modane: running\)$/);
  });
});

describe('trigger records and the reason of a run', () => {
  const who = { site: 'modane', target: 'lyon', agent: 'modane-1', host: 'h' };
  const run = (ok: boolean, at: number, reason?: string) => ({
    started: ago(at),
    ended: ago(at - 1),
    ok,
    how: ok ? 'exit 0' : 'exit 1',
    ...(reason ? { reason } : {}),
  });

  it('counts the failures in a row from the first one, and a run that ends well ends the streak', () => {
    let record = nextRecord(undefined, who, run(false, 50, 'first'), NOW);
    record = nextRecord(record, who, run(false, 40, 'second'), NOW);
    assert.deepEqual(record.failing, { runs: 2, since: ago(50), reason: 'second' });
    assert.deepEqual([record._id, record.runs, record.failures], ['mesh-trigger:modane:lyon', 2, 2]);
    record = nextRecord(record, who, run(true, 30), NOW);
    assert.equal(record.failing, undefined);
    assert.deepEqual([record.runs, record.failures, record.last.ok], [3, 2, true]);
    assert.equal(nextRecord(record, who, run(false, 20), NOW).failing?.reason, 'exit 1');
  });

  it("takes mesh's failure line, else the last error, else the last warning; scrubbed and short", () => {
    const words = new RunWords();
    assert.equal(words.reason(), undefined);
    words.logged(40, 'retrying');
    words.logged(50, 'heartbeat (stopped): write mesh-agent:lyon:x', '401 unauthorized');
    words.logged(30, 'agent stopped');
    assert.equal(words.reason(), 'heartbeat (stopped): write mesh-agent:lyon:x: 401 unauthorized');
    words.logged(60, 'cannot claim', { type: 'MeshError', message: '403 forbidden', stack: '…' });
    assert.equal(words.reason(), 'cannot claim: 403 forbidden');
    words.text('mesh: cannot read http://u:secret@127.0.0.1:5984/datadb: 401 unauthorized');
    words.text('some other line');
    assert.equal(words.reason(), 'cannot read http://127.0.0.1:5984/datadb: 401 unauthorized');
    words.text(`mesh: ${'x'.repeat(500)}`);
    assert.equal(words.reason()?.length, 300);
  });

  it('a ready document waits since its last status change, or its retry time when later', () => {
    const doc = { history: [{ at: ago(100) }, { at: ago(50) }], pending: { proc1: { attempts: 1, retry_after: ago(20) } } } as unknown as DaqDocument;
    assert.equal(readySince(doc, 'proc1'), ago(20));
    assert.equal(readySince(doc, 'proc0'), ago(50));
    assert.equal(readySince({} as DaqDocument, 'proc1'), undefined);
  });
});
