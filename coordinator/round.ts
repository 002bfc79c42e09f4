/**
 * One coordinator round, and the loop that repeats it: on every reachable server the database,
 * `_design/mesh` and the original scripts' `_design/proc`; the replication markers read on every
 * reachable server; the replication jobs (restarted when errored or stalled); a new marker
 * written on each reachable server (store/markers.ts); the assignment
 * (on the coordinator's server); the double-claim audit on every reachable server; then the
 * alerts (latency targets, silent agents, a stuck chain), each new one logged once at warn. A server that does not answer is logged and
 * skipped, never fatal.
 */
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { pushDesigns } from '../store/designs.js';
import { pushSecurity } from '../store/security.js';
import { type Alert, AlertTracker, currentAlerts } from './alerts.js';
import { assignFromConfig } from './assignment.js';
import { type AuditResult, auditServer } from './audit.js';
import { writeMarker } from '../store/markers.js';
import { type ReplicationReport, ReplicationMonitor, ensureReplications, readAllMarkers } from './replication.js';
import { behindText, stallAfterMs } from './freshness.js';
import { flowsOf, serverFlows } from './flow.js';
import { type OpenDatabase, distinctServers, serverOf } from './servers.js';
import { meshStatus } from './status.js';

export interface CoordinatorContext {
  config: MeshConfig;
  open: OpenDatabase;
  logger: Logger;
  /** Written into the assignment's `by`, e.g. `coordinator/modane`. */
  by: string;
  now?: () => Date;
  /** Logs new and cleared alerts (and runs the hook); one is made from the config when absent. */
  alerts?: AlertTracker;
}

export interface RoundSummary {
  round: number;
  /** `design` is `updated` when either design document was written. */
  servers: Array<{ site: string; reachable: boolean; design?: 'updated' | 'unchanged'; error?: string }>;
  replications: ReplicationReport[];
  /** The marker written on each reachable server this round (`conflict`: another coordinator wrote one at the same time). */
  markers: Array<{ site: string; result: 'written' | 'conflict' | 'failed'; n?: number; error?: string }>;
  assignment: 'written' | 'unchanged' | 'skipped';
  audits: AuditResult[];
  /** The alerts that hold after this round (see alerts.ts). */
  alerts: Alert[];
}

async function prepareServer(ctx: CoordinatorContext, site: SiteConfig): Promise<RoundSummary['servers'][number]> {
  try {
    const db = ctx.open(site);
    await db.ensure();
    const pushed = await pushDesigns(db, ctx.config);
    // The accounts of the mesh roles may use the database only once _security admits them.
    await pushSecurity(db, Object.keys(ctx.config.sites));
    return { site: site.name, reachable: true, design: pushed.some((p) => p.changed) ? 'updated' : 'unchanged' };
  } catch (error) {
    ctx.logger.warn({ server: site.name, url: site.server, err: errorMessage(error) }, 'server unreachable or refusing; skipped this round');
    return { site: site.name, reachable: false, error: errorMessage(error) };
  }
}

export async function coordinatorRound(ctx: CoordinatorContext, monitor: ReplicationMonitor, round = 1): Promise<RoundSummary> {
  const now = ctx.now ?? (() => new Date());
  const servers = distinctServers(ctx.config);
  const states = await Promise.all(servers.map((site) => prepareServer(ctx, site)));
  const up = new Set(states.filter((s) => s.reachable).map((s) => s.site));

  // Read before this round's markers are written: each link has had a whole round to carry the last ones.
  const down = new Set(servers.map((s) => s.name).filter((name) => !up.has(name)));
  const markers = await readAllMarkers(ctx.config, ctx.open, down);
  const replications = await ensureReplications(ctx.config, ctx.open, ctx.logger, monitor, now, { up, markers });
  const written = await writeMarkers(
    ctx,
    servers.filter((s) => up.has(s.name)),
    monitor.intervalMs,
    now(),
  );

  let assignment: RoundSummary['assignment'] = 'skipped';
  const home = serverOf(ctx.config, ctx.config.sites[ctx.config.coordinator.site]);
  if (up.has(home.name)) {
    try {
      assignment = (await assignFromConfig(ctx.open(home), ctx.config, ctx.by, now())).changed ? 'written' : 'unchanged';
    } catch (error) {
      ctx.logger.warn({ server: home.name, err: errorMessage(error) }, 'assignment not written');
    }
  }

  const audits: AuditResult[] = [];
  for (const site of servers.filter((s) => up.has(s.name))) {
    try {
      audits.push(await auditServer(ctx.config, site, ctx.open(site), ctx.logger, now()));
    } catch (error) {
      ctx.logger.warn({ server: site.name, err: errorMessage(error) }, 'audit failed');
      audits.push({ site: site.name, detected: 0, resolved: 0, errors: [{ doc: '', error: errorMessage(error) }] });
    }
  }
  const alerts = ctx.alerts ? await checkAlerts(ctx, ctx.alerts) : [];
  return { round, servers: states, replications, markers: written, assignment, audits, alerts };
}

/** One marker per reachable server, on that server; a failure is logged and reported, never fatal. */
async function writeMarkers(ctx: CoordinatorContext, servers: SiteConfig[], intervalMs: number, now: Date): Promise<RoundSummary['markers']> {
  return Promise.all(
    servers.map(async (site): Promise<RoundSummary['markers'][number]> => {
      try {
        const write = await writeMarker(ctx.open(site), site.name, { by: ctx.by, now, intervalS: intervalMs / 1000 });
        return write.result === 'written' ? { site: site.name, result: 'written', n: write.marker.n } : { site: site.name, result: 'conflict' };
      } catch (error) {
        ctx.logger.warn({ server: site.name, err: errorMessage(error) }, 'replication marker not written');
        return { site: site.name, result: 'failed', error: errorMessage(error) };
      }
    }),
  );
}

/** Every alert (alerts.ts), from the same bounded queries as `mesh status`; a failure is logged, never fatal. */
async function checkAlerts(ctx: CoordinatorContext, tracker: AlertTracker): Promise<Alert[]> {
  const now = (ctx.now ?? (() => new Date()))();
  try {
    const status = await meshStatus(ctx.config, ctx.open, now);
    const flows = await serverFlows(ctx.config, ctx.open, status, { now, windowMs: ctx.config.alerts.window_s * 1000, hours: 0 });
    for (const f of flows) if (f.error) ctx.logger.warn({ server: f.site, err: f.error }, 'flow not read; latency targets not checked there');
    tracker.update(await currentAlerts(ctx.config, ctx.open, status, flowsOf(flows), now), now);
  } catch (error) {
    ctx.logger.warn({ err: errorMessage(error) }, 'alerts not evaluated this round');
  }
  return tracker.active();
}

/** `round 3: servers 2/2 up; replication modane→kit running, kit is 0 s behind modane, …; assignment unchanged; double claims 1 found, 1 resolved`. */
export function summaryLine(summary: RoundSummary): string {
  const up = summary.servers.filter((s) => s.reachable).length;
  const down = summary.servers.filter((s) => !s.reachable).map((s) => `${s.site} UNREACHABLE`);
  const jobs = summary.replications.map(
    (r) =>
      `${r.from}→${r.to} ${r.state}${r.reason ? ` (${r.reason})` : ''}${r.action === 'none' ? '' : ` (${r.action}${r.restarted_for ? `: ${r.restarted_for}` : ''})`}, ${behindText(r.from, r.to, r)}`,
  );
  const detected = summary.audits.reduce((n, a) => n + a.detected, 0);
  const resolved = summary.audits.reduce((n, a) => n + a.resolved, 0);
  return [
    `round ${summary.round}: servers ${up}/${summary.servers.length} up${down.length ? ` (${down.join(', ')})` : ''}`,
    `replication ${jobs.join('; ') || 'none (one server)'}`,
    `assignment ${summary.assignment}`,
    `double claims ${detected} found, ${resolved} resolved`,
    `alerts ${summary.alerts.length ? summary.alerts.map((a) => a.key).join(', ') : 'none'}`,
  ].join('; ');
}

/**
 * Rounds until `signal` aborts (checked between rounds; the sleep between them ends at once),
 * or one round with `once`. Returns the last round's summary.
 */
export async function runCoordinator(
  ctx: CoordinatorContext,
  options: { once: boolean; intervalMs: number; signal: AbortSignal },
): Promise<RoundSummary | undefined> {
  const monitor = new ReplicationMonitor({ intervalMs: options.intervalMs, stallAfterMs: stallAfterMs(options.intervalMs) });
  const alerts = ctx.alerts ?? new AlertTracker({ logger: ctx.logger, hook: ctx.config.alerts.hook, hookTimeoutMs: ctx.config.alerts.hook_timeout_s * 1000 });
  const withAlerts = { ...ctx, alerts };
  let last: RoundSummary | undefined;
  try {
    for (let round = 1; !options.signal.aborted; round++) {
      last = await coordinatorRound(withAlerts, monitor, round);
      ctx.logger.info({ round, servers: last.servers, replication: last.replications.map(({ error: _e, ...r }) => r) }, summaryLine(last));
      if (options.once) break;
      if (!(await sleep(options.intervalMs, options.signal))) break;
    }
  } finally {
    // Hooks started in the last round finish (or time out) before the coordinator exits.
    await alerts.idle();
  }
  return last;
}
