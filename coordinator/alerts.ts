/**
 * Alerts: a pure evaluation of the mesh's status and flow against the config (a latency target
 * missed, an agent gone silent), and a small tracker that logs each new alert once at `warn`,
 * a line when it clears, and hands both to the optional hook.
 */
import type { MeshConfig } from '../config/types.js';
import { formatDuration } from '../core/duration.js';
import type { Logger } from '../core/log.js';
import { runAlertHook } from './alert-hook.js';
import type { Alert } from './alert.js';
import { type AlertEvidence, readAlertEvidence } from './alert-evidence.js';
import { daqBufferAlerts, readDaqEvidence } from './daq-alert.js';
import type { FlowStatus, LateFile } from './flow.js';
import type { OpenDatabase } from './servers.js';
import type { AgentStatus, MeshStatus } from './status.js';
import { stuckAlerts } from './stuck-alerts.js';

export { ALERT_KINDS, type Alert, type AlertKind } from './alert.js';

/**
 * The alerts that hold now. `flows` are the flow status of any number of servers (replicas of
 * one database): a step's late files are merged across them, one alert per step. `evidence`
 * (alert-evidence.ts) adds the alerts of a stuck chain (stuck-alerts.ts).
 */
export function evaluateAlerts(status: MeshStatus, flows: readonly FlowStatus[], config: MeshConfig, now: Date, evidence?: AlertEvidence): Alert[] {
  return [...latencyAlerts(flows, config, now), ...silentAgents(status, config, now), ...(evidence ? stuckAlerts(status, evidence, config, now) : [])];
}

/** Reads the evidence of the stuck-chain alerts from the servers, then evaluates every alert. */
export async function currentAlerts(config: MeshConfig, open: OpenDatabase, status: MeshStatus, flows: readonly FlowStatus[], now: Date): Promise<Alert[]> {
  const [evidence, daq] = await Promise.all([readAlertEvidence(config, open, status, now), readDaqEvidence(config, open)]);
  return [...evaluateAlerts(status, flows, config, now, evidence), ...daqBufferAlerts(daq, config, now)];
}

/**
 * Seconds since a running agent's last heartbeat when that exceeds `alerts.agent_silent_s`, else
 * undefined: the one definition of "silent", for the alerts and the status page alike. A stopped
 * agent said goodbye (an `--once` run, a clean shutdown): never silent.
 */
export function silentFor(agent: Pick<AgentStatus, 'state' | 'last_seen'>, config: Pick<MeshConfig, 'alerts'>, now: Date): number | undefined {
  if (agent.state === 'stopped') return undefined;
  const lastSeen = Date.parse(agent.last_seen);
  if (!Number.isFinite(lastSeen)) return undefined;
  const seconds = (now.getTime() - lastSeen) / 1000;
  return seconds > config.alerts.agent_silent_s ? seconds : undefined;
}

function silentAgents(status: MeshStatus, config: MeshConfig, now: Date): Alert[] {
  const limit = config.alerts.agent_silent_s;
  const alerts: Alert[] = [];
  for (const agent of status.agents) {
    const silent = silentFor(agent, config, now);
    if (silent === undefined) continue;
    const lastSeen = Date.parse(agent.last_seen);
    alerts.push({
      kind: 'agent_silent',
      key: `agent_silent:${agent.site}/${agent.agent}`,
      message: `agent ${agent.site}/${agent.agent} on ${agent.host} silent for ${formatDuration(silent)} (last heartbeat ${agent.last_seen}, state ${agent.state}, limit ${formatDuration(limit)})`,
      action:
        `Check the agent's process on ${agent.host}: is it running, can it reach its server? An agent that stops on purpose says so (state stopped) and is not reported; ` +
        "its claims are taken over by the site's other agents once their leases end.",
      since: new Date(lastSeen).toISOString(),
    });
  }
  return alerts;
}

function latencyAlerts(flows: readonly FlowStatus[], config: MeshConfig, now: Date): Alert[] {
  const alerts: Alert[] = [];
  for (const step of config.steps) {
    const target = config.targets[step.name];
    if (target === undefined) continue;
    const stages = flows.flatMap((f) => f.latency.filter((l) => l.stage === step.name));
    const late = new Map<string, LateFile>();
    for (const file of stages.flatMap((s) => s.late)) {
      const known = late.get(file.doc);
      // The same file on two servers: the one that says done wins, else the worse latency.
      if (!known || (file.done && !known.done) || (file.done === known.done && file.latency_s > known.latency_s)) late.set(file.doc, file);
    }
    // Servers are replicas: the largest count is the best estimate, never less than the files listed.
    const count = Math.max(late.size, ...stages.map((s) => s.late_count));
    if (count === 0) continue;
    const files = [...late.values()];
    const pending = files.filter((f) => !f.done);
    const worst = [...files].sort((a, b) => b.latency_s - a.latency_s)[0];
    const becameLate = files.map((f) => Date.parse(f.closed) + target * 1000).filter(Number.isFinite);
    alerts.push({
      kind: 'latency_target',
      key: `latency_target:${step.name}`,
      message:
        `${step.name} missed its target of ${formatDuration(target)} from DAQ close for ${count} file${count === 1 ? '' : 's'}` +
        (pending.length > 0 ? ` (${late.size < count ? 'at least ' : ''}${pending.length} not done yet)` : '') +
        (worst ? `; worst ${worst.doc}: ${formatDuration(worst.latency_s)}${worst.done ? '' : ' and counting'}` : ''),
      action:
        `Find where the files wait (the flow in \`mesh status\` or on the page): the stage up to ${step.name} whose p95 grew, a site whose agents are busy or down, ` +
        'failed attempts being retried; add agents or concurrency to the slow site, or look at the step program itself.',
      since: new Date(becameLate.length > 0 ? Math.min(...becameLate) : now.getTime()).toISOString(),
    });
  }
  return alerts;
}

export interface AlertTrackerOptions {
  logger: Logger;
  /** Argument vector started (no shell) for each new and each cleared alert, with the alert as JSON on stdin. */
  hook?: readonly string[];
  hookTimeoutMs?: number;
}

/** What the hook receives on stdin, one JSON object. */
export interface AlertEvent extends Alert {
  state: 'raised' | 'cleared';
  at: string;
}

/**
 * Remembers which alerts are active: `update` logs a new alert once at `warn` (not again while it
 * holds), and one `info` line when it clears; each of those also starts the hook.
 */
export class AlertTracker {
  private readonly current = new Map<string, Alert>();
  private readonly hooks = new Set<Promise<void>>();

  constructor(private readonly options: AlertTrackerOptions) {}

  update(alerts: readonly Alert[], now: Date): { raised: Alert[]; cleared: Alert[] } {
    const seen = new Map(alerts.map((a) => [a.key, a]));
    const raised: Alert[] = [];
    const cleared: Alert[] = [];
    for (const [key, alert] of seen) {
      const known = this.current.get(key);
      if (known) {
        // Keep the first `since`, refresh the numbers in the message.
        this.current.set(key, { ...alert, since: known.since });
        continue;
      }
      this.current.set(key, alert);
      raised.push(alert);
      this.options.logger.warn({ alert: alert.kind, key, since: alert.since, action: alert.action }, `ALERT ${alert.message}`);
      this.notify({ ...alert, state: 'raised', at: now.toISOString() });
    }
    for (const [key, alert] of this.current) {
      if (seen.has(key)) continue;
      this.current.delete(key);
      cleared.push(alert);
      this.options.logger.info({ alert: alert.kind, key, since: alert.since }, `alert cleared: ${alert.message}`);
      this.notify({ ...alert, state: 'cleared', at: now.toISOString() });
    }
    return { raised, cleared };
  }

  /** The alerts that hold, oldest first. */
  active(): Alert[] {
    return [...this.current.values()].sort((a, b) => a.since.localeCompare(b.since));
  }

  /** Resolves once every hook started so far has finished (or was killed at its timeout). */
  async idle(): Promise<void> {
    while (this.hooks.size > 0) await Promise.allSettled([...this.hooks]);
  }

  private notify(event: AlertEvent): void {
    const hook = this.options.hook;
    if (!hook || hook.length === 0) return;
    const running = runAlertHook(hook, event, this.options.hookTimeoutMs ?? 10_000).then(
      (outcome) => {
        if (!outcome.ok) this.options.logger.warn({ key: event.key, hook: hook[0] }, `alert hook failed: ${outcome.reason}`);
      },
      () => undefined,
    );
    this.hooks.add(running);
    void running.finally(() => this.hooks.delete(running));
  }
}
