/**
 * Replication between the mesh's servers: which `_replicator` jobs must exist, where each one
 * lives, their state, how far behind each link is, and their repair.
 *
 * Placement: a server that nobody can connect to (`reachable: false`) holds both jobs of each
 * pair it is part of (it pushes and pulls); otherwise the coordinator's server holds them when
 * it is one of the pair, else the source. Two unreachable servers are not paired (they could
 * not reach each other): their data travels through a reachable server.
 *
 * Freshness comes from the markers (store/markers.ts, coordinator/freshness.ts), the same way on
 * every kind of server; a job's state and error reason from `/_scheduler/docs` where the server
 * has it (store/capabilities.ts), else from its `_replicator` document.
 *
 * Credentials travel only inside the `_replicator` documents (`{ url, headers: { Authorization } }`),
 * a database that never replicates; they are never logged.
 */
import { authorization } from '../store/database.js';
import { isDeepStrictEqual } from 'node:util';
import { replicationCredentialsFor } from '../config/credentials.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { CapabilityCache } from '../store/capabilities.js';
import { type Marker, readMarkers } from '../store/markers.js';
import { type Endpoint, type JobState, type ReplicatorDocument, createJob, documentState, readJob, recreateJob, schedulerState } from '../store/replication.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type LinkFreshness, type Seen, linkFreshness, stallAfterMs } from './freshness.js';
import { type OpenDatabase, distinctServers, notAuthorised } from './servers.js';

export type { ReplicatorDocument } from '../store/replication.js';

export interface PlannedReplication {
  /** The `_replicator` document id: `mesh-<db>-<from>-to-<to>`. */
  id: string;
  from: string;
  to: string;
  /** The site whose server's `_replicator` holds the job. */
  on: string;
  source: SiteConfig;
  target: SiteConfig;
  host: SiteConfig;
}

/** Where the lag figure (`behind_s`) came from: the markers, or nowhere (unknown). */
export type LagSource = 'marker' | 'none';

export interface ReplicationReport {
  id: string;
  from: string;
  to: string;
  on: string;
  /** running, pending, error, failed, crashing, completed (CouchDB scheduler states), ignored, or missing / unreachable / not authorised. */
  state: string;
  /** Why the job is in an error state, as the server says it (e.g. `replication_auth_error`). */
  reason?: string;
  /** CouchDB's `changes_pending` when its scheduler gives one (cached up to 30 s, often null); null otherwise. A hint: `behind_s` is the measure. */
  pending: number | null;
  lag_from: LagSource;
  /** Seconds the target is behind the source, from the markers (coordinator/freshness.ts); null when unknown. */
  behind_s: number | null;
  /** Why `behind_s` is null (e.g. `target not read`). */
  behind_unknown?: string;
  /** Age of the newest source marker the target holds. */
  marker_age_s: number | null;
  /** `behind_s` is past the stall threshold. */
  stalled: boolean;
  /** What this call did to the job. */
  action: 'none' | 'created' | 'updated' | 'restarted';
  /** Why it was restarted: `stalled`, or the state it was in. */
  restarted_for?: string;
  error?: string;
}

const RESTART_STATES = new Set(['error', 'failed', 'crashing', 'completed', 'ignored']);

function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '_');
}

export function replicationId(database: string, from: string, to: string): string {
  return `mesh-${safeName(database)}-${from}-to-${to}`;
}

/** Every job the mesh needs, in a stable order; pure. */
export function plannedReplications(config: MeshConfig): PlannedReplication[] {
  const servers = distinctServers(config);
  const coordinatorServer = config.sites[config.coordinator.site]?.server;
  const jobs: PlannedReplication[] = [];
  for (let i = 0; i < servers.length; i++) {
    for (let j = i + 1; j < servers.length; j++) {
      const [a, b] = [servers[i], servers[j]];
      if (!a.reachable && !b.reachable) continue;
      const fixedHost = !a.reachable ? a : !b.reachable ? b : coordinatorServer === a.server ? a : coordinatorServer === b.server ? b : undefined;
      for (const [source, target] of [
        [a, b],
        [b, a],
      ] as const) {
        const host = fixedHost ?? source;
        jobs.push({ id: replicationId(config.database, source.name, target.name), from: source.name, to: target.name, on: host.name, source, target, host });
      }
    }
  }
  return jobs;
}

function endpoint(config: MeshConfig, site: SiteConfig, env: NodeJS.ProcessEnv): Endpoint {
  const url = `${site.server}/${encodeURIComponent(config.database)}`;
  const credentials = replicationCredentialsFor(site.credentials_of, env);
  // A bare URL when the server is open: pouchdb-replicator reads `headers.Authorization` of an object endpoint without checking `headers`.
  if (!credentials) return url;
  return { url, headers: authorization(credentials) as { Authorization: string } };
}

/**
 * The `_replicator` document of a job (with credentials: never log it). `mesh_written` tells
 * when this incarnation was written; it also makes a recreated job differ from the deleted
 * one, which the embedded server needs: pouchdb-replicator keeps the signature of a deleted
 * job and treats an identical new document as a duplicate of it, never starting it.
 */
export function replicationDocument(config: MeshConfig, job: PlannedReplication, env: NodeJS.ProcessEnv = process.env, now = new Date()): ReplicatorDocument {
  return {
    _id: job.id,
    source: endpoint(config, job.source, env),
    target: endpoint(config, job.target, env),
    continuous: true,
    mesh_written: now.toISOString(),
  };
}

/** What makes two jobs the same replication (the replicator's own fields and `mesh_written` aside). */
function jobContent(doc: ReplicatorDocument): Record<string, unknown> {
  return { source: doc.source, target: doc.target, continuous: doc.continuous };
}

/**
 * What the coordinator remembers between rounds: each server's capabilities (probed once)
 * and when each job was last restarted (a restarted job gets `stallAfterMs` to catch up
 * before it may be restarted again for being behind).
 */
export class ReplicationMonitor {
  readonly capabilities = new CapabilityCache();
  readonly restarted = new Map<string, number>();
  readonly intervalMs: number;
  readonly stallAfterMs: number;
  constructor(options: { intervalMs?: number; stallAfterMs?: number } = {}) {
    this.intervalMs = options.intervalMs ?? 30_000;
    this.stallAfterMs = options.stallAfterMs ?? stallAfterMs(this.intervalMs);
  }

  /** True when the link is further behind than `stallAfterMs` and the job was not restarted within that time. */
  stalled(id: string, behindS: number | null, now: number): boolean {
    if (behindS === null || behindS * 1000 < this.stallAfterMs) return false;
    const last = this.restarted.get(id);
    return last === undefined || now - last >= this.stallAfterMs;
  }
}

/** The job's state and error reason: `/_scheduler/docs` where the host server has it, else the `_replicator` document's fields. */
async function inspect(job: PlannedReplication, doc: ReplicatorDocument, open: OpenDatabase, monitor: ReplicationMonitor, logger: Logger): Promise<JobState> {
  const host = open(job.host, '');
  const capabilities = await monitor.capabilities.of(host, (found) => {
    if (!found.schedulerDocs)
      logger.info(
        { server: job.host.name },
        `${job.host.name}'s server has no /_scheduler/docs: job state and error reason read from the _replicator documents`,
      );
  });
  return capabilities.schedulerDocs ? schedulerState(host, job.id) : documentState(doc);
}

/** Each server's markers, or `unread` for a server that did not answer (or is known down). */
export type MarkerReadings = Map<string, Map<string, Marker> | 'unread'>;

/** Reads the markers on every distinct server (those in `down` are not asked). */
export async function readAllMarkers(config: MeshConfig, open: OpenDatabase, down: ReadonlySet<string> = new Set()): Promise<MarkerReadings> {
  const servers = distinctServers(config);
  const read = await Promise.all(servers.map(async (site) => (down.has(site.name) ? 'unread' : await readMarkers(open(site)).catch(() => 'unread' as const))));
  return new Map(servers.map((site, i) => [site.name, read[i]]));
}

/** The freshness of a job's link from the markers read. */
export function jobFreshness(job: Pick<PlannedReplication, 'from' | 'to'>, markers: MarkerReadings, now: number): LinkFreshness {
  const on = (server: string): Seen => {
    const held = markers.get(server);
    return held === undefined || held === 'unread' ? 'unread' : held.get(job.from);
  };
  return linkFreshness(on(job.from), on(job.to), now);
}

/** One job's line of the report: where it runs, what its server says of it, how fresh its target is. */
function jobReport(
  job: PlannedReplication,
  seen: JobState,
  fields: ReturnType<typeof freshnessFields>,
  action: ReplicationReport['action'],
): ReplicationReport {
  return {
    id: job.id,
    from: job.from,
    to: job.to,
    on: job.on,
    state: seen.state,
    ...(seen.reason ? { reason: seen.reason } : {}),
    pending: seen.pending,
    ...fields,
    action,
  };
}

function freshnessFields(
  f: LinkFreshness | undefined,
  stallMs: number,
): Pick<ReplicationReport, 'lag_from' | 'behind_s' | 'behind_unknown' | 'marker_age_s' | 'stalled'> {
  const behind = f?.behind_s ?? null;
  const unknown = behind === null ? (f?.unknown ?? 'markers not read') : undefined;
  return {
    lag_from: behind === null ? 'none' : 'marker',
    behind_s: behind,
    ...(unknown ? { behind_unknown: unknown } : {}),
    marker_age_s: f?.marker_age_s ?? null,
    stalled: behind !== null && behind * 1000 >= stallMs,
  };
}

function unreachable(job: PlannedReplication, error: unknown, f: LinkFreshness | undefined, stallMs: number): ReplicationReport {
  const refused = notAuthorised(error);
  return {
    id: job.id,
    from: job.from,
    to: job.to,
    on: job.on,
    state: refused ? 'not authorised' : 'unreachable',
    pending: null,
    ...freshnessFields(f, stallMs),
    action: 'none',
    error: refused ?? errorMessage(error),
  };
}

export interface EnsureOptions {
  /** The servers (site names of `distinctServers`) that answered this round; all when absent. */
  up?: ReadonlySet<string>;
  /** Each server's markers, read this round before new ones were written. */
  markers?: MarkerReadings;
}

/**
 * Makes every planned job exist with the wanted content (no write when it already does),
 * restarts a job that is errored, failed, crashing, completed or ignored, or whose link is
 * stalled (further behind than the monitor's threshold) — but only while the coordinator reaches
 * both of its servers: with one end down a restart cannot help, and the job's state and error
 * reason are reported as the server gives them. A server that does not answer is reported, not fatal.
 */
export async function ensureReplications(
  config: MeshConfig,
  open: OpenDatabase,
  logger: Logger,
  monitor = new ReplicationMonitor(),
  now: () => Date = () => new Date(),
  options: EnsureOptions = {},
): Promise<ReplicationReport[]> {
  const reports: ReplicationReport[] = [];
  const bothUp = (job: PlannedReplication) => !options.up || (options.up.has(job.source.name) && options.up.has(job.target.name));
  for (const job of plannedReplications(config)) {
    const log = logger.child({ replication: job.id, on: job.on });
    const freshness = options.markers ? jobFreshness(job, options.markers, now().getTime()) : undefined;
    try {
      const replicator = open(job.host, '_replicator');
      const wanted = replicationDocument(config, job, process.env, now());
      let action: ReplicationReport['action'] = 'none';
      const current = await readJob(replicator, job.id);
      if (!current) {
        await createJob(replicator, wanted);
        action = 'created';
      } else if (!isDeepStrictEqual(jobContent(current), jobContent(wanted))) {
        await recreateJob(replicator, wanted);
        action = 'updated';
      }
      if (action !== 'none') log.info({ from: job.from, to: job.to }, `replication job ${action}`);
      const stored = (action === 'none' ? current : await readJob(replicator, job.id)) ?? wanted;
      const seen = await inspect(job, stored, open, monitor, log);
      const fields = freshnessFields(freshness, monitor.stallAfterMs);
      const stalled = monitor.stalled(job.id, fields.behind_s, now().getTime());
      let restartedFor: string | undefined;
      if (action === 'none' && bothUp(job) && (RESTART_STATES.has(seen.state) || stalled)) {
        restartedFor = stalled ? 'stalled' : seen.state;
        log.warn(
          { state: seen.state, reason: seen.reason, behind_s: fields.behind_s, stall_after_s: monitor.stallAfterMs / 1000 },
          stalled ? `restarting replication job: ${job.to} is ${fields.behind_s} s behind ${job.from}` : `restarting replication job (${seen.state})`,
        );
        await recreateJob(replicator, wanted);
        monitor.restarted.set(job.id, now().getTime());
        action = 'restarted';
      }
      reports.push({ ...jobReport(job, seen, fields, action), ...(restartedFor ? { restarted_for: restartedFor } : {}) });
    } catch (error) {
      log.warn({ err: errorMessage(error) }, 'replication job not checked: server unreachable or refusing');
      reports.push(unreachable(job, error, freshness, monitor.stallAfterMs));
    }
  }
  return reports;
}

/** The jobs' state and each link's freshness, read only (for `mesh status`). */
export async function replicationStatus(
  config: MeshConfig,
  open: OpenDatabase,
  logger: Logger,
  monitor = new ReplicationMonitor({ intervalMs: config.coordinator.interval_s * 1000 }),
  now = new Date(),
): Promise<ReplicationReport[]> {
  const markers = await readAllMarkers(config, open);
  return Promise.all(
    plannedReplications(config).map(async (job): Promise<ReplicationReport> => {
      const fields = freshnessFields(jobFreshness(job, markers, now.getTime()), monitor.stallAfterMs);
      try {
        const doc = await readJob(open(job.host, '_replicator'), job.id);
        if (!doc) return { id: job.id, from: job.from, to: job.to, on: job.on, state: 'missing', pending: null, ...fields, action: 'none' };
        const seen = await inspect(job, doc, open, monitor, logger);
        return jobReport(job, seen, fields, 'none');
      } catch (error) {
        return { ...unreachable(job, error, undefined, monitor.stallAfterMs), ...fields };
      }
    }),
  );
}
