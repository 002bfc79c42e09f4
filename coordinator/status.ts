import type { MeshConfig, SiteConfig } from '../config/types.js';
import { type OnceRun, readHeartbeats } from '../store/heartbeats.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import { errorMessage, isMeshError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import {
  type ClaimOnce,
  type FailedFile,
  type FailedStep,
  type FileCounts,
  type InFlightClaim,
  type StepCounts,
  claimsOnce,
  countFilesOnce,
  failedOnce,
} from './files-once.js';
import { type ReplicationReport, replicationStatus } from './replication.js';
import { type RunsStatus, readServerRuns, runsOnce } from './runs-status.js';
import { type OlderRecords, olderRecordCounts } from './reprocess.js';
import { type ControlsStatus, controlsAcross } from './controls.js';
import { readControls } from '../store/controls.js';
import { type OpenDatabase, distinctServers, notAuthorised } from './servers.js';

export { distinctServers } from './servers.js';

export type { StepCounts } from './files-once.js';

export interface DatabaseStatus {
  site: string;
  url: string;
  reachable: boolean;
  /** The server answered 401 or 403: it is up, but these credentials may not read the database. */
  not_authorised?: true;
  /** No answer at all (refused connection, timeout): the server is down or cut off. Without either flag, it answered with an error. */
  unreachable?: true;
  error?: string;
  doc_count: number;
  by_status: Record<string, number>;
  steps: Record<string, StepCounts>;
  conflicts: number;
  in_flight: InFlightClaim[];
  failed: FailedStep[];
  /** Per step with a version in the config: done records older than it (`mesh reprocess` re-makes them); absent when unknown. */
  older_versions?: Record<string, OlderRecords>;
}

export interface AgentStatus {
  site: string;
  agent: string;
  host: string;
  state: string;
  last_seen: string;
  age_s: number;
  running: Array<{ doc: string; step: string }>;
  server: string;
  /** The agent's counters since it started (claims, claim_conflicts, retries, steps_ok, steps_failed), when its heartbeat has them. */
  counters?: Record<string, number>;
  /** A site's `--once` runs on one host, one agent: the run shown (its own name, start, end and outcome once it ended). */
  last_run?: OnceRun;
}

/**
 * A replication job as `mesh status` shows it: the report of `replicationStatus` without the
 * action taken. `behind_s` is how far the job's target is behind its source, from the markers
 * (coordinator/freshness.ts); `reason` the server's words for an error state.
 */
export type ReplicationStatus = Pick<
  ReplicationReport,
  'from' | 'to' | 'on' | 'state' | 'reason' | 'pending' | 'lag_from' | 'behind_s' | 'behind_unknown' | 'marker_age_s' | 'stalled'
>;

export interface MeshStatus {
  generated: string;
  database: string;
  databases: DatabaseStatus[];
  agents: AgentStatus[];
  replication: ReplicationStatus[];
  /**
   * Documents claimed twice, each counted once mesh-wide: `detected` are those in conflict now or
   * carrying the audit's `duplicates[]` on any reachable server, `resolved` those no longer in conflict.
   */
  double_claims: { detected: number; resolved: number };
  /** The operators' paused steps and drained sites (who, why, since), from every readable server. */
  controls?: ControlsStatus;
}

/** What `meshStatus` adds to the per-server numbers: the mesh-wide ones, each file once. */
export interface MeshCounts {
  /**
   * The mesh-wide numbers, each file once (coordinator/files-once.ts): per step the counts of one
   * server, and the servers whose copy differs. `databases[].steps` stay per server.
   */
  files: FileCounts;
  /** Failed steps, one row per file and step with the servers holding it failed (the first 50 of each server). */
  failed: FailedFile[];
  /** Claims in flight, one row per file and step with the servers holding the claim (the first 50 of each server). */
  in_flight: ClaimOnce[];
  /** The servers that could not be read, and why: what the numbers above may be missing. */
  unreadable: Array<{ server: string; reason: string; not_authorised?: true; unreachable?: true }>;
  /** With run steps: the run documents, each run once (coordinator/runs-status.ts). */
  runs?: RunsStatus;
}

export type FullMeshStatus = MeshStatus & MeshCounts;

const LIST_LIMIT = 50;

/**
 * Counts from reduce views only, so the answer stays fast however many documents there are.
 * A server that fails or answers nonsense part-way gives what was read and the error.
 */
export async function databaseStatus(config: MeshConfig, site: SiteConfig, db: Database, now: Date): Promise<{ db: DatabaseStatus; agents: AgentStatus[] }> {
  const base: DatabaseStatus = {
    site: site.name,
    url: site.server,
    reachable: false,
    doc_count: 0,
    by_status: {},
    steps: {},
    conflicts: 0,
    in_flight: [],
    failed: [],
  };
  try {
    return await readDatabaseStatus(config, db, now, base);
  } catch (error) {
    return { db: { ...base, ...failure(error) }, agents: [] };
  }
}

function failure(error: unknown, suffix = ''): Pick<DatabaseStatus, 'error' | 'not_authorised' | 'unreachable'> {
  const refused = notAuthorised(error);
  if (refused) return { error: refused, not_authorised: true };
  const down = isMeshError(error, 'SERVER_UNREACHABLE') || isMeshError(error, 'ABORTED');
  return { error: `${errorMessage(error)}${suffix}`, ...(down ? { unreachable: true as const } : {}) };
}

async function readDatabaseStatus(config: MeshConfig, db: Database, now: Date, base: DatabaseStatus): Promise<{ db: DatabaseStatus; agents: AgentStatus[] }> {
  const site = { name: base.site };
  for (const [status, count] of await files.countByStatus(db)) base.by_status[status] = count;
  base.reachable = true;
  base.doc_count = Object.values(base.by_status).reduce((a, b) => a + b, 0);
  const doneBy = await files.countDone(db);
  const iso = now.toISOString();
  for (const step of config.steps) {
    base.steps[step.name] = {
      done: doneBy.get(step.name) ?? 0,
      ready: await files.readyCount(db, step.name, iso),
      queued: base.by_status[`${step.name} queued`] ?? 0,
      in_progress: base.by_status[`${step.name} in progress`] ?? 0,
      failed: base.by_status[`${step.name} failed`] ?? 0,
    };
  }
  base.conflicts = await files.conflictCount(db);
  const older = await olderRecordCounts(config, db);
  if (older && Object.keys(older).length > 0) base.older_versions = older;

  base.in_flight = (await files.claimsInFlight(db, LIST_LIMIT)).map((r) => {
    // Shown as the view holds them (a record without a lease shows null).
    const leaseUntil = r.lease_until as string;
    const lease = Date.parse(leaseUntil);
    const since = Date.parse(r.started ?? leaseUntil);
    return {
      doc: r.doc,
      step: r.step,
      agent: r.agent as string,
      site: r.site as string,
      attempts: r.attempts as number,
      lease_until: leaseUntil,
      lease_age_s: Math.round((now.getTime() - since) / 1000),
      expired: lease <= now.getTime(),
    };
  });
  base.failed = (await files.failedSteps(db, LIST_LIMIT)).map((r) => ({
    doc: r.doc,
    step: r.step,
    reason: r.reason ?? 'unknown',
    exit_code: r.exit_code ?? null,
    stderr_tail: r.stderr_tail as string | undefined,
    run_name: r.run_name,
    file_number: r.file_number,
  }));

  const agents = (await readHeartbeats(db)).map((h) => ({
    site: h.site,
    agent: h.agent,
    host: h.host,
    state: h.state,
    last_seen: h.last_seen,
    age_s: Math.round((now.getTime() - Date.parse(h.last_seen)) / 1000),
    running: h.running ?? [],
    server: site.name,
    ...(h.counters ? { counters: h.counters as unknown as Record<string, number> } : {}),
    ...(h.last_run ? { last_run: h.last_run } : {}),
  }));
  return { db: base, agents };
}

/**
 * Everything across every server. `open(site, database)` opens `database` on the site's server
 * (the data database when omitted); the replication jobs are read from `_replicator`.
 */
export async function meshStatus(config: MeshConfig, open: OpenDatabase, now = new Date()): Promise<FullMeshStatus> {
  const servers = distinctServers(config);
  const [results, replication, counters, runs, controls] = await Promise.all([
    // A query failing after the first (a timeout while a view index builds) makes that server's numbers partial: unreachable.
    Promise.all(servers.map((site) => databaseStatus(config, site, open(site), now).catch((error: unknown) => unreachableStatus(site, error)))),
    replicationStatus(config, open, silentLogger(), undefined, now),
    Promise.all(servers.map((site) => doubleClaimIds(open(site)).catch(() => ({ conflicted: [], duplicated: [] })))),
    Promise.all(servers.map((site) => readServerRuns(config, site.name, open(site)).catch(() => undefined))),
    Promise.all(servers.map(async (site) => ({ server: site.name, controls: await readControls(open(site)).catch(() => undefined) }))),
  ]);
  const databases = results.map((r) => r.db);
  const files = countFilesOnce(config, databases, new Set(counters.flatMap((c) => c.conflicted)).size);
  return {
    generated: now.toISOString(),
    database: config.database,
    databases,
    agents: newestHeartbeats(results.flatMap((r) => r.agents)),
    replication: replication.map(({ from, to, on, state, reason, pending, lag_from, behind_s, behind_unknown, marker_age_s, stalled }) => ({
      from,
      to,
      on,
      state,
      ...(reason ? { reason } : {}),
      pending,
      lag_from,
      behind_s,
      ...(behind_unknown ? { behind_unknown } : {}),
      marker_age_s,
      stalled,
    })),
    double_claims: doubleClaims(counters),
    controls: controlsAcross(controls),
    files,
    failed: failedOnce(config, databases, { stepsFrom: files.steps_from, limit: LIST_LIMIT }),
    in_flight: claimsOnce(config, databases, { stepsFrom: files.steps_from, limit: LIST_LIMIT }),
    ...((config.run_steps ?? []).length > 0 ? { runs: runsOnce(config, runs) } : {}),
    unreadable: databases
      .filter((d) => !d.reachable)
      .map((d) => ({
        server: d.site,
        reason: d.error ?? 'no answer',
        ...(d.not_authorised ? { not_authorised: true as const } : {}),
        ...(d.unreachable ? { unreachable: true as const } : {}),
      })),
  };
}

/** How many documents to list per server for the double-claim count: they are rare, and the count says when it is capped. */
const DOUBLE_CLAIM_LIMIT = 10_000;

/** The ids of the documents in conflict and of those with duplicates[] on one server. */
async function doubleClaimIds(db: Database): Promise<{ conflicted: string[]; duplicated: string[] }> {
  const [conflicted, duplicated] = await Promise.all([files.conflicted(db, DOUBLE_CLAIM_LIMIT), files.duplicated(db, DOUBLE_CLAIM_LIMIT)]);
  return { conflicted, duplicated };
}

/** Counted by document id over every server: a document replicated to two servers is one double claim. */
export function doubleClaims(perServer: ReadonlyArray<{ conflicted: readonly string[]; duplicated: readonly string[] }>): MeshStatus['double_claims'] {
  const conflicted = new Set(perServer.flatMap((s) => s.conflicted));
  const all = new Set([...conflicted, ...perServer.flatMap((s) => s.duplicated)]);
  return { detected: all.size, resolved: all.size - conflicted.size };
}

function unreachableStatus(site: SiteConfig, error: unknown): { db: DatabaseStatus; agents: AgentStatus[] } {
  return {
    db: {
      site: site.name,
      url: site.server,
      reachable: false,
      ...failure(error, ' (counts incomplete)'),
      doc_count: 0,
      by_status: {},
      steps: {},
      conflicts: 0,
      in_flight: [],
      failed: [],
    },
    agents: [],
  };
}

/** Heartbeat documents replicate: one entry per agent, the newest heartbeat wins. */
function newestHeartbeats(agents: AgentStatus[]): AgentStatus[] {
  const newest = new Map<string, AgentStatus>();
  for (const agent of agents) {
    const key = `${agent.site}/${agent.agent}`;
    const known = newest.get(key);
    if (!known || agent.last_seen > known.last_seen) newest.set(key, agent);
  }
  return [...newest.values()];
}
