/**
 * `/metrics` in the Prometheus text format: built on each scrape from `meshStatus` (reduce views),
 * the flow of every reachable server and the agents' heartbeat counters, in a registry of its
 * own (never prom-client's global one, so nothing else leaks into it and scrapes do not add up).
 * Gauges describe the state now; the `_total` counters come from monotonic counts kept in
 * documents (the audit's, and each agent's since it started — a restart resets them, which
 * Prometheus' rate() handles).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { MeshConfig } from '../config/types.js';
import { ALERT_KINDS, currentAlerts } from './alerts.js';
import { flowsOf, serverFlows } from './flow.js';
import type { OpenDatabase } from './servers.js';
import { meshStatus } from './status.js';

const STATES = ['done', 'ready', 'queued', 'in_progress', 'failed'] as const;
const AGENT_COUNTERS = [
  ['claims', 'couchmesh_agent_claims_total', 'Claims the agent won since it started'],
  [
    'claim_conflicts',
    'couchmesh_agent_claim_conflicts_total',
    'Claims the agent lost to another agent (a 409 on the compare-and-set, or the NATS claim registry) since it started',
  ],
  [
    'retries',
    'couchmesh_agent_retries_total',
    'Attempts after the first that the agent claimed (a retry after a failure, an expired claim taken over) since it started',
  ],
] as const;

export async function metricsText(config: MeshConfig, open: OpenDatabase, now = new Date()): Promise<{ contentType: string; body: string }> {
  const status = await meshStatus(config, open, now);
  const flows = await serverFlows(config, open, status, { now, windowMs: config.alerts.window_s * 1000, hours: 0 });
  const alerts = await currentAlerts(config, open, status, flowsOf(flows), now);

  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers: [registry] });

  const up = gauge('couchmesh_server_up', '1 when the server answered this scrape, else 0', ['server']);
  const documents = gauge('couchmesh_documents', 'Documents by status', ['server', 'status']);
  const steps = gauge('couchmesh_step_documents', 'Documents per step and state (done, ready, queued, in_progress, failed)', ['server', 'step', 'state']);
  const conflicts = gauge('couchmesh_conflicted_documents', 'Documents with replication conflicts not yet resolved by the audit', ['server']);
  for (const db of status.databases) {
    up.set({ server: db.site }, db.reachable ? 1 : 0);
    if (!db.reachable) continue;
    for (const [name, n] of Object.entries(db.by_status)) documents.set({ server: db.site, status: name }, n);
    for (const [step, counts] of Object.entries(db.steps)) for (const state of STATES) steps.set({ server: db.site, step, state }, counts[state]);
    conflicts.set({ server: db.site }, db.conflicts);
  }

  const window = gauge('couchmesh_flow_window_seconds', 'Window of the latency and completion figures below (alerts.window_s)');
  window.set(config.alerts.window_s);
  const completed = gauge('couchmesh_stage_completed', 'Files that finished the step within the window', ['server', 'stage']);
  const stage = gauge(
    'couchmesh_stage_latency_seconds',
    'Latency of the stage: from the previous step done (DAQ close for the first) to this step done, over the window',
    ['server', 'stage', 'quantile'],
  );
  const sinceClose = gauge('couchmesh_latency_from_close_seconds', 'From DAQ close to this step done, over the window (what the target is compared with)', [
    'server',
    'stage',
    'quantile',
  ]);
  const run = gauge('couchmesh_step_duration_seconds', 'Run time of the step (duration_s of the records), over the window', ['server', 'step', 'quantile']);
  const late = gauge('couchmesh_late_files', 'Files past the step target: done late within the window, or not done and older than the target', [
    'server',
    'stage',
  ]);
  const capped = gauge('couchmesh_flow_sample_capped', '1 when more files finished in the window than were read for the quantiles', ['server', 'stage']);
  const target = gauge('couchmesh_latency_target_seconds', 'Target from DAQ close to the step done (config targets)', ['stage']);
  for (const [name, seconds] of Object.entries(config.targets)) target.set({ stage: name }, seconds);
  for (const { site, flow } of flows) {
    for (const l of flow?.latency ?? []) {
      const labels = { server: site, stage: l.stage };
      completed.set(labels, l.count);
      late.set(labels, l.late_count);
      capped.set(labels, l.capped ? 1 : 0);
      const quantiles: Array<[string, number | null, number | null, number | null]> = [
        ['0.5', l.p50_s, l.close_p50_s, l.run_p50_s],
        ['0.95', l.p95_s, l.close_p95_s, l.run_p95_s],
      ];
      for (const [quantile, s, c, r] of quantiles) {
        if (s !== null) stage.set({ ...labels, quantile }, s);
        if (c !== null) sinceClose.set({ ...labels, quantile }, c);
        if (r !== null) run.set({ server: site, step: l.stage, quantile }, r);
      }
    }
  }

  if (status.runs) {
    const runs = gauge('couchmesh_runs', 'Run documents per state (open, todo, done, bad), each run once', ['state']);
    for (const [state, n] of Object.entries(status.runs.counts)) runs.set({ state }, n);
    const lateMembers = gauge('couchmesh_run_late_members', "Files catalogued after their run's step started (not in its archive), per run", ['run']);
    for (const l of status.runs.late) lateMembers.set({ run: l.run_name }, l.late_members);
  }

  const detected = counter('couchmesh_double_claims_detected_total', 'Double claims (cross-server replication conflicts) the audit found', []);
  const resolved = counter('couchmesh_double_claims_resolved_total', 'Double claims the audit resolved', []);
  detected.inc(status.double_claims.detected);
  resolved.inc(status.double_claims.resolved);

  const pending = gauge(
    'couchmesh_replication_pending',
    "CouchDB's changes_pending of the job (cached up to 30 s by CouchDB; absent when the server gives none): a hint, behind_seconds is the measure",
    ['from', 'to', 'on'],
  );
  const replication = gauge('couchmesh_replication_state', '1 for the current state of each replication job', ['from', 'to', 'on', 'state']);
  const behind = gauge(
    'couchmesh_replication_behind_seconds',
    'How long ago the source wrote its oldest replication marker the target has not received (0: the target has the newest); absent when unknown',
    ['from', 'to', 'on'],
  );
  const markerAge = gauge('couchmesh_replication_marker_age_seconds', 'Age of the newest marker of the source that the target holds', ['from', 'to', 'on']);
  const stalled = gauge('couchmesh_replication_stalled', '1 when behind_seconds is past the stall threshold (the coordinator restarts the job)', [
    'from',
    'to',
    'on',
  ]);
  for (const r of status.replication) {
    const labels = { from: r.from, to: r.to, on: r.on };
    replication.set({ ...labels, state: r.state }, 1);
    if (r.pending !== null) pending.set(labels, r.pending);
    if (r.behind_s !== null) behind.set(labels, r.behind_s);
    if (r.marker_age_s !== null) markerAge.set(labels, r.marker_age_s);
    stalled.set(labels, r.stalled ? 1 : 0);
  }

  const labelsOf = (a: { site: string; agent: string; host: string }) => ({ site: a.site, agent: a.agent, host: a.host ?? '' });
  const agentLabels = ['site', 'agent', 'host'];
  const age = gauge('couchmesh_agent_heartbeat_age_seconds', 'Seconds since the agent last wrote its heartbeat', agentLabels);
  const lastSeen = gauge('couchmesh_agent_last_seen_timestamp_seconds', "Unix time of the agent's last heartbeat", agentLabels);
  const alive = gauge('couchmesh_agent_running', '1 while the agent says it runs (its last heartbeat state is not stopped)', agentLabels);
  const busy = gauge('couchmesh_agent_running_steps', 'Steps the agent was running at its last heartbeat', agentLabels);
  const counters = AGENT_COUNTERS.map(([key, name, help]) => [key, counter(name, help, agentLabels)] as const);
  const stepsRun = counter('couchmesh_agent_steps_total', 'Steps the agent ran to an end since it started, by result (ok, failed)', [...agentLabels, 'result']);
  for (const a of status.agents) {
    const labels = labelsOf(a);
    const seen = Date.parse(a.last_seen);
    if (Number.isFinite(seen)) {
      lastSeen.set(labels, seen / 1000);
      age.set(labels, Math.max(0, (now.getTime() - seen) / 1000));
    }
    alive.set(labels, a.state === 'stopped' ? 0 : 1);
    busy.set(labels, a.running.length);
    if (!a.counters) continue;
    for (const [key, metric] of counters) metric.inc(labels, nonNegative(a.counters[key]));
    stepsRun.inc({ ...labels, result: 'ok' }, nonNegative(a.counters.steps_ok));
    stepsRun.inc({ ...labels, result: 'failed' }, nonNegative(a.counters.steps_failed));
  }

  const active = gauge('couchmesh_alerts_active', `Alerts that hold now, by kind (${ALERT_KINDS.join(', ')})`, ['kind']);
  for (const kind of ALERT_KINDS) active.set({ kind }, 0);
  for (const alert of alerts) active.inc({ kind: alert.kind });

  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Counters from documents: anything but a non-negative number counts as 0. */
function nonNegative(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
