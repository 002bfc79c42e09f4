/**
 * Replication between the mesh's servers: which `_replicator` jobs must exist, where each one
 * lives, their state, their lag, and their repair.
 *
 * Placement: a server that nobody can connect to (`reachable: false`) holds both jobs of each
 * pair it is part of (it pushes and pulls); otherwise the coordinator's server holds them when
 * it is one of the pair, else the source. Two unreachable servers are not paired (they could
 * not reach each other): their data travels through a reachable server.
 *
 * Credentials travel only inside the `_replicator` documents (`{ url, headers: { Authorization } }`),
 * a database that never replicates; they are never logged.
 */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { replicationCredentialsFor } from '../config/credentials.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type OpenDatabase, distinctServers, notAuthorised } from './servers.js';

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

/** Where the lag figure came from. */
export type LagSource = 'scheduler' | 'checkpoint' | 'doc_count' | 'none';

export interface ReplicationReport {
  id: string;
  from: string;
  to: string;
  on: string;
  /** running, pending, error, failed, crashing, completed (CouchDB scheduler states) or missing / unreachable / not authorised. */
  state: string;
  /** Changes on the source not yet covered by the replication checkpoint; null when unknown. */
  pending: number | null;
  lag_from: LagSource;
  /** What this call did to the job. */
  action: 'none' | 'created' | 'updated' | 'restarted';
  error?: string;
}

type Endpoint = string | { url: string; headers: { Authorization: string } };

export interface ReplicatorDocument {
  _id: string;
  _rev?: string;
  source: Endpoint;
  target: Endpoint;
  continuous: true;
  [field: string]: unknown;
}

const RESTART_STATES = new Set(['error', 'failed', 'crashing', 'completed', 'ignored']);
const CHANGES_COUNT_LIMIT = 10_000;

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
      for (const [source, target] of [[a, b], [b, a]] as const) {
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
  return { url, headers: { Authorization: `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}` } };
}

/**
 * The `_replicator` document of a job (with credentials: never log it). `mesh_written` tells
 * when this incarnation was written; it also makes a recreated job differ from the deleted
 * one, which the embedded server needs: pouchdb-replicator keeps the signature of a deleted
 * job and treats an identical new document as a duplicate of it, never starting it.
 */
export function replicationDocument(config: MeshConfig, job: PlannedReplication, env: NodeJS.ProcessEnv = process.env, now = new Date()): ReplicatorDocument {
  return { _id: job.id, source: endpoint(config, job.source, env), target: endpoint(config, job.target, env), continuous: true, mesh_written: now.toISOString() };
}

/** What makes two jobs the same replication (the replicator's own fields and `mesh_written` aside). */
function jobContent(doc: ReplicatorDocument): Record<string, unknown> {
  return { source: doc.source, target: doc.target, continuous: doc.continuous };
}

interface Progress {
  checkpoint: string;
  since: number;
}

/**
 * What the coordinator remembers between rounds: which servers lack `/_scheduler/docs`
 * (said once in the logs) and each job's last checkpoint, to find stalled jobs.
 */
export class ReplicationMonitor {
  /** Server URL → whether it answers `/_scheduler/docs`. */
  readonly scheduler = new Map<string, boolean>();
  readonly progress = new Map<string, Progress>();
  constructor(readonly stallAfterMs = 300_000) {}

  /** True when the job has had changes pending without its checkpoint moving for `stallAfterMs`. */
  stalled(id: string, checkpoint: string | undefined, pending: number | null, now: number): boolean {
    if (checkpoint === undefined || !pending) {
      this.progress.delete(id);
      return false;
    }
    const known = this.progress.get(id);
    if (!known || known.checkpoint !== checkpoint) {
      this.progress.set(id, { checkpoint, since: now });
      return false;
    }
    return now - known.since >= this.stallAfterMs;
  }
}

interface Inspection {
  state: string;
  pending: number | null;
  lag_from: LagSource;
  checkpoint?: string;
}

function seqNumber(seq: unknown): number {
  return typeof seq === 'number' ? seq : Number.parseInt(String(seq), 10);
}

/**
 * PouchDB's checkpoint id (`generateReplicationId` of PouchDB 9 for an unfiltered replication
 * between two HTTP databases): base64 md5 of `<source uuid><db><target uuid><db>`, with `/` → `.`
 * and `+` → `_`. The uuids are those `GET /` answers on each server.
 */
async function pouchCheckpointId(config: MeshConfig, job: PlannedReplication, open: OpenDatabase): Promise<string | undefined> {
  const uuid = async (site: SiteConfig) => (await open(site, '').request<{ uuid?: string }>('server info', { path: '' })).uuid;
  const [source, target] = await Promise.all([uuid(job.source), uuid(job.target)]);
  if (!source || !target) return undefined;
  const db = encodeURIComponent(config.database);
  return createHash('md5').update(source + db + target + db, 'binary').digest('base64').replace(/\//g, '.').replace(/\+/g, '_');
}

/** Changes on `source` after `since`, counted exactly up to a limit, estimated from sequence numbers beyond it. */
async function changesSince(source: Database, since: string | number): Promise<number> {
  const info = await source.info();
  const estimate = seqNumber(info.update_seq) - seqNumber(since);
  if (!Number.isNaN(estimate) && estimate <= 0) return 0;
  const changes = await source.request<{ results: unknown[] }>('changes since the checkpoint', { path: '_changes', qs: { since, limit: CHANGES_COUNT_LIMIT } });
  return changes.results.length < CHANGES_COUNT_LIMIT || Number.isNaN(estimate) ? changes.results.length : estimate;
}

/** The lag when nothing better is known: how many more documents the source has than the target. */
async function docCountLag(job: PlannedReplication, open: OpenDatabase): Promise<number> {
  const [source, target] = await Promise.all([open(job.source).info(), open(job.target).info()]);
  return Math.max(0, source.doc_count - target.doc_count);
}

/** Whether the server answers CouchDB 3's `/_scheduler/docs`; remembered, and its absence said once in the logs. */
async function hasScheduler(server: Database, site: SiteConfig, monitor: ReplicationMonitor, logger: Logger): Promise<boolean> {
  const known = monitor.scheduler.get(site.server);
  if (known !== undefined) return known;
  try {
    await server.request('replication scheduler', { path: '_scheduler/docs', qs: { limit: 1 } });
    monitor.scheduler.set(site.server, true);
  } catch (error) {
    if (!isMeshError(error, 'NOT_FOUND')) throw error;
    monitor.scheduler.set(site.server, false);
    logger.info({ server: site.name }, `${site.name}'s server has no /_scheduler/docs (an embedded server older than this version, or not CouchDB 3): job state read from the _replicator documents, lag from the PouchDB _local checkpoint`);
  }
  return monitor.scheduler.get(site.server) as boolean;
}

/**
 * The job's state and lag: CouchDB 3's `/_scheduler/docs` when the server has it (the embedded
 * server's included), else the document's fields; the lag from the scheduler's `changes_pending`,
 * else from PouchDB's `_local` checkpoint (the embedded server's replicator), else from document counts.
 */
async function inspect(config: MeshConfig, job: PlannedReplication, doc: ReplicatorDocument, open: OpenDatabase, monitor: ReplicationMonitor, logger: Logger): Promise<Inspection> {
  const host = open(job.host, '');
  let state: string;
  if (await hasScheduler(host, job.host, monitor, logger)) {
    let scheduled: { state?: string; info?: { changes_pending?: number | null; checkpointed_source_seq?: unknown } | null } | undefined;
    try {
      scheduled = await host.request('replication scheduler', { path: `_scheduler/docs/_replicator/${encodeURIComponent(job.id)}` });
    } catch (error) {
      // A job written a moment ago may not be scheduled yet.
      if (!isMeshError(error, 'NOT_FOUND')) throw error;
    }
    const pending = scheduled?.info?.changes_pending;
    const checkpoint = scheduled?.info?.checkpointed_source_seq;
    state = scheduled?.state ?? 'pending';
    if (typeof pending === 'number') return { state, pending, lag_from: 'scheduler', checkpoint: checkpoint === undefined ? undefined : JSON.stringify(checkpoint) };
  } else {
    const field = doc._replication_state;
    // `_replication_id` without a state: pouchdb-replicator took the job for a duplicate of another and will never run it.
    state = field === 'triggered' ? 'running' : typeof field === 'string' ? field : doc._replication_id ? 'ignored' : 'pending';
  }
  const id = await pouchCheckpointId(config, job, open);
  const source = open(job.source);
  const stored = id ? ((await source.getLocal<{ last_seq?: string | number }>(id)) ?? (await open(job.target).getLocal<{ last_seq?: string | number }>(id))) : undefined;
  if (stored?.last_seq !== undefined) return { state, pending: await changesSince(source, stored.last_seq), lag_from: 'checkpoint', checkpoint: String(stored.last_seq) };
  return { state, pending: await docCountLag(job, open), lag_from: 'doc_count' };
}

async function removeJob(replicator: Database, id: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await replicator.get<{ _rev: string }>(id);
    if (!current) return;
    // The embedded replicator writes its state into the document right after our write: a conflict means "read again".
    const [row] = await replicator.bulk([{ _id: id, _rev: current._rev, _deleted: true }]);
    if (row?.error === 'conflict') continue;
    if (row?.error) throw new MeshError('SERVER_ERROR', `deleting replication job ${id}: ${row.error} ${row.reason ?? ''}`.trim());
    return;
  }
  throw new MeshError('CONFLICT', `replication job ${id} kept changing while it was being deleted`);
}

/** Deletes and recreates a job: the documented way to restart a replication (a triggered job cannot be edited). */
async function recreate(replicator: Database, wanted: ReplicatorDocument): Promise<void> {
  await removeJob(replicator, wanted._id);
  await replicator.put({ ...wanted });
}

function unreachable(job: PlannedReplication, error: unknown): ReplicationReport {
  const refused = notAuthorised(error);
  return { id: job.id, from: job.from, to: job.to, on: job.on, state: refused ? 'not authorised' : 'unreachable', pending: null, lag_from: 'none', action: 'none', error: refused ?? errorMessage(error) };
}

/**
 * Makes every planned job exist with the wanted content (no write when it already does),
 * restarts errored, failed, crashing, completed or stalled ones, and reports each job's state
 * and lag. A server that does not answer is reported, not fatal.
 */
export async function ensureReplications(config: MeshConfig, open: OpenDatabase, logger: Logger, monitor = new ReplicationMonitor(), now: () => Date = () => new Date()): Promise<ReplicationReport[]> {
  const reports: ReplicationReport[] = [];
  for (const job of plannedReplications(config)) {
    const log = logger.child({ replication: job.id, on: job.on });
    try {
      const replicator = open(job.host, '_replicator');
      const wanted = replicationDocument(config, job, process.env, now());
      let action: ReplicationReport['action'] = 'none';
      const current = await replicator.get<ReplicatorDocument>(job.id);
      if (!current) {
        await replicator.ensure();
        await replicator.put({ ...wanted });
        action = 'created';
      } else if (!isDeepStrictEqual(jobContent(current), jobContent(wanted))) {
        await recreate(replicator, wanted);
        action = 'updated';
      }
      if (action !== 'none') log.info({ from: job.from, to: job.to }, `replication job ${action}`);
      const stored = (action === 'none' ? current : await replicator.get<ReplicatorDocument>(job.id)) ?? wanted;
      const seen = await inspect(config, job, stored, open, monitor, log);
      const stalled = monitor.stalled(job.id, seen.checkpoint, seen.pending, now().getTime());
      if (action === 'none' && (RESTART_STATES.has(seen.state) || stalled)) {
        log.warn({ state: seen.state, stalled, pending: seen.pending, reason: stored._replication_state_reason }, 'restarting replication job');
        await recreate(replicator, wanted);
        monitor.progress.delete(job.id);
        action = 'restarted';
      }
      reports.push({ id: job.id, from: job.from, to: job.to, on: job.on, state: action === 'restarted' ? 'restarted' : seen.state, pending: seen.pending, lag_from: seen.lag_from, action });
    } catch (error) {
      log.warn({ err: errorMessage(error) }, 'replication job not checked: server unreachable or refusing');
      reports.push(unreachable(job, error));
    }
  }
  return reports;
}

/** The jobs' state and lag, read only (for `mesh status`). */
export async function replicationStatus(config: MeshConfig, open: OpenDatabase, logger: Logger, monitor = new ReplicationMonitor()): Promise<ReplicationReport[]> {
  return Promise.all(
    plannedReplications(config).map(async (job): Promise<ReplicationReport> => {
      try {
        const doc = await open(job.host, '_replicator').get<ReplicatorDocument>(job.id);
        if (!doc) return { id: job.id, from: job.from, to: job.to, on: job.on, state: 'missing', pending: null, lag_from: 'none', action: 'none' };
        const seen = await inspect(config, job, doc, open, monitor, logger);
        return { id: job.id, from: job.from, to: job.to, on: job.on, state: seen.state, pending: seen.pending, lag_from: seen.lag_from, action: 'none' };
      } catch (error) {
        return unreachable(job, error);
      }
    }),
  );
}
