/**
 * One coordinator round, and the loop that repeats it: on every reachable server the database
 * and `_design/mesh`; the replication jobs; the assignment (on the coordinator's server); the
 * double-claim audit on every reachable server. A server that does not answer is logged and
 * skipped, never fatal.
 */
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../couchapp/push.js';
import { writeAssignment } from './assignment.js';
import { type AuditResult, auditServer } from './audit.js';
import { type ReplicationReport, ReplicationMonitor, ensureReplications } from './replication.js';
import { type OpenDatabase, distinctServers, serverOf } from './servers.js';

export interface CoordinatorContext {
  config: MeshConfig;
  open: OpenDatabase;
  logger: Logger;
  /** Written into the assignment's `by`, e.g. `coordinator/modane`. */
  by: string;
  now?: () => Date;
}

export interface RoundSummary {
  round: number;
  servers: Array<{ site: string; reachable: boolean; design?: 'updated' | 'unchanged'; error?: string }>;
  replications: ReplicationReport[];
  assignment: 'written' | 'unchanged' | 'skipped';
  audits: AuditResult[];
}

async function prepareServer(ctx: CoordinatorContext, site: SiteConfig): Promise<RoundSummary['servers'][number]> {
  try {
    const db = ctx.open(site);
    await db.ensure();
    const pushed = await pushDesign(db, designDocument(ctx.config));
    return { site: site.name, reachable: true, design: pushed.changed ? 'updated' : 'unchanged' };
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

  const replications = await ensureReplications(ctx.config, ctx.open, ctx.logger, monitor, now);

  let assignment: RoundSummary['assignment'] = 'skipped';
  const home = serverOf(ctx.config, ctx.config.sites[ctx.config.coordinator.site]);
  if (up.has(home.name)) {
    try {
      assignment = (await writeAssignment(ctx.open(home), ctx.config, ctx.by, now())).changed ? 'written' : 'unchanged';
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
  return { round, servers: states, replications, assignment, audits };
}

/** `round 3: servers 2/2 up; replication modane→kit running (0 pending), …; assignment unchanged; double claims 1 found, 1 resolved`. */
export function summaryLine(summary: RoundSummary): string {
  const up = summary.servers.filter((s) => s.reachable).length;
  const down = summary.servers.filter((s) => !s.reachable).map((s) => `${s.site} UNREACHABLE`);
  const jobs = summary.replications.map((r) => `${r.from}→${r.to} ${r.state}${r.action === 'none' ? '' : ` (${r.action})`}${r.pending === null ? '' : `, ${r.pending} pending`}`);
  const detected = summary.audits.reduce((n, a) => n + a.detected, 0);
  const resolved = summary.audits.reduce((n, a) => n + a.resolved, 0);
  return [
    `round ${summary.round}: servers ${up}/${summary.servers.length} up${down.length ? ` (${down.join(', ')})` : ''}`,
    `replication ${jobs.join('; ') || 'none (one server)'}`,
    `assignment ${summary.assignment}`,
    `double claims ${detected} found, ${resolved} resolved`,
  ].join('; ');
}

/**
 * Rounds until `signal` aborts (checked between rounds; the sleep between them ends at once),
 * or one round with `once`. Returns the last round's summary.
 */
export async function runCoordinator(ctx: CoordinatorContext, options: { once: boolean; intervalMs: number; signal: AbortSignal }): Promise<RoundSummary | undefined> {
  const monitor = new ReplicationMonitor(Math.max(3 * options.intervalMs, 60_000));
  let last: RoundSummary | undefined;
  for (let round = 1; !options.signal.aborted; round++) {
    last = await coordinatorRound(ctx, monitor, round);
    ctx.logger.info({ round, servers: last.servers, replication: last.replications.map(({ error: _e, ...r }) => r) }, summaryLine(last));
    if (options.once) break;
    if (!(await sleep(options.intervalMs, options.signal))) break;
  }
  return last;
}
