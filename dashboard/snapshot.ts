/**
 * What the live page shows, in one JSON document: everything comes from reduce views or
 * bounded queries (`limit`), so its cost does not grow with the number of documents.
 */
import type { MeshConfig, SiteConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import { errorMessage } from '../core/errors.js';
import { type Alert, currentAlerts, silentFor } from '../coordinator/alerts.js';
import { type AuditDocument, auditDocId } from '../store/audit.js';
import { type FlowStatus, flowStatus } from '../coordinator/flow.js';
import type { OpenDatabase } from '../coordinator/servers.js';
import type { FailedStep, FileCounts } from '../coordinator/files-once.js';
import { type AgentStatus, type FullMeshStatus, type MeshStatus, type StepCounts, distinctServers, meshStatus } from '../coordinator/status.js';
import { type StatusSummary, statusSummary } from '../coordinator/summary.js';
import { serverOf } from '../coordinator/servers.js';
import type { ControlsStatus } from '../coordinator/controls.js';
import { type Progress, describeProgress } from '../core/progress.js';
import type { RunsStatus } from '../coordinator/runs-status.js';
import type { OlderRecords } from '../coordinator/reprocess.js';
import { type CustodyTally, custodyTally } from '../store/custody.js';
import { publicUrl } from './databases.js';

export const RUNS_LIMIT = 40;
const PROBLEMS_LIMIT = 50;

export interface RunOverview {
  daq_host: string;
  run: string;
  files: number;
  latest_file: number;
  /** The run's latest file: its status and its state in words ("complete", "retrying proc1 (attempt 2 of 3, next at 08:31 UTC)"). */
  latest?: { doc: string; status: string; state?: Progress };
  /** Files of the run failed now, each once (counted from the failed list: `failed_capped` when that list was cut). */
  failed?: number;
}

export interface Snapshot {
  generated: string;
  database: string;
  /** The worst state in one line, worst first: the page's header and tab title (the first line of `mesh status`). */
  summary: StatusSummary;
  /** The operators' paused steps and drained sites, with who, why and since. */
  controls: ControlsStatus;
  steps: string[];
  /** The steps in order: their site, the server their agents claim on, their attempt limit. */
  pipeline: Array<{ name: string; site: string; server: string; max_attempts: number }>;
  /** The server the runs, flow and navigation were read from. */
  read_from: string | null;
  servers: Array<{
    site: string;
    url: string;
    reachable: boolean;
    not_authorised?: true;
    unreachable?: true;
    error?: string;
    doc_count: number;
    by_status: Record<string, number>;
    steps: Record<string, StepCounts>;
    conflicts: number;
  }>;
  /**
   * Per step, each file once: the counts of the server the step's agents claim on (`totals_from`),
   * never a sum over servers (which counted every replica; before issue 13 it did).
   */
  totals: Record<string, StepCounts>;
  totals_from: Record<string, string | null>;
  /** Distinct files, the servers that differ and the documents in conflict (coordinator/files-once.ts). */
  files: FileCounts;
  runs: RunOverview[];
  /** With run steps: the run documents (archives), each run once, with their late members (coordinator/runs-status.ts). */
  run_documents?: RunsStatus;
  /** With custody steps: the DAQ's files by agreeing copies and whether `mesh purge` deleted them, read from the DAQ site's server. */
  custody?: { server: string; tally: CustodyTally[] } | { server: string; error: string };
  /** Per step with a version: the done records older than the config's (what `mesh reprocess STEP` counts), from the step's server. */
  older_versions?: Record<string, OlderRecords & { server: string }>;
  /** Whether the failed list (and so the runs' failed counts) was cut at the list limit. */
  failed_capped: boolean;
  problems: {
    /** One row per failed file and step; `servers` hold it failed, `server` is the first of them. */
    failed: Array<FailedStep & { server: string; servers: string[] }>;
    stale_claims: Array<{
      server: string;
      servers: string[];
      doc: string;
      step: string;
      agent: string;
      site: string;
      lease_until: string;
      lease_age_s: number;
    }>;
    lost_jobs: Array<{
      server: string;
      servers: string[];
      doc: string;
      step: string;
      reason: string;
      system: string | null;
      job: string | null;
      status: string;
    }>;
    replication: MeshStatus['replication'];
    double_claims: MeshStatus['double_claims'];
    /** The audit's latest resolutions, per server. */
    resolutions: Array<{ server: string } & AuditDocument['recent'][number]>;
    /** Documents in conflict now, each once. */
    conflicts: number;
    silent_agents: AgentStatus[];
  };
  in_flight: Array<{ server: string; servers: string[]; doc: string; step: string; agent: string; site: string; attempts: number; lease_age_s: number }>;
  agents: AgentStatus[];
  flow: FlowStatus | null;
  flow_error?: string;
  alerts: Alert[];
}

/** The server the page reads shared things from: the first reachable one, the ingest site's first. */
export function readingOrder(config: MeshConfig): SiteConfig[] {
  const servers = distinctServers(config);
  const ingestServer = config.sites[config.ingest.site]?.server;
  return [...servers.filter((s) => s.server === ingestServer), ...servers.filter((s) => s.server !== ingestServer)];
}

/**
 * Per DAQ host and run, the highest file number (the `_stats` reduce) and that file's status and
 * state in words: the last `limit` (host, run) pairs of the view, shown by host, the newest run first.
 */
export async function runOverview(db: Database, config: MeshConfig, now: Date, limit = RUNS_LIMIT): Promise<RunOverview[]> {
  const runs = (await files.hostRuns(db, limit)).map((r) => ({ daq_host: r.host, run: r.run, files: r.files, latest_file: r.latest_file }) as RunOverview);
  runs.sort((a, b) => (a.daq_host === b.daq_host ? (a.run < b.run ? 1 : a.run > b.run ? -1 : 0) : a.daq_host < b.daq_host ? -1 : 1));
  if (runs.length === 0) return runs;
  const latest = await files.documentsAt(
    db,
    runs.map((r) => [r.run, r.latest_file]),
  );
  const byKey = new Map(
    latest.map((d) => [JSON.stringify([d.run_name, d.file_number]), { doc: d._id, status: d.status, state: describeProgress(d, config, now) }]),
  );
  for (const run of runs) run.latest = byKey.get(JSON.stringify([run.run, run.latest_file]));
  return runs;
}

async function lostJobs(
  db: Database,
): Promise<Array<{ doc: string; step: string; reason: string; system: string | null; job: string | null; status: string }>> {
  return files.lostJobs(db, PROBLEMS_LIMIT);
}

/** Rows of several servers, one per (doc, step), with the servers that hold it; the first server's row is kept. */
function onceByFile<T extends { doc: string; step: string }>(
  perServer: ReadonlyArray<{ server: string; rows: readonly T[] }>,
): Array<T & { server: string; servers: string[] }> {
  const rows = new Map<string, T & { server: string; servers: string[] }>();
  for (const { server, rows: list } of perServer) {
    for (const row of list) {
      const key = `${row.doc}\u0000${row.step}`;
      const known = rows.get(key);
      if (known) known.servers.push(server);
      else rows.set(key, { ...row, server, servers: [server] });
    }
  }
  return [...rows.values()];
}

export interface SnapshotOptions {
  now?: Date;
  /** Latency window of the flow section. */
  windowMs: number;
  /** Hours of the completed-files chart. */
  hours: number;
  /** Servers to read the flow from, in order (default: every server, the ingest site's first). */
  sites?: SiteConfig[];
}

/** Tries `fn` on each server in reading order; the first answer wins. */
export async function fromFirstReachable<T>(
  sites: SiteConfig[],
  open: OpenDatabase,
  fn: (db: Database, site: SiteConfig) => Promise<T>,
): Promise<{ value: T; site: SiteConfig } | { error: string }> {
  const errors: string[] = [];
  for (const site of sites) {
    try {
      return { value: await fn(open(site), site), site };
    } catch (error) {
      errors.push(`${site.name}: ${errorMessage(error)}`);
    }
  }
  return { error: errors.join('; ') || 'no server configured' };
}

export async function flowFor(config: MeshConfig, open: OpenDatabase, options: SnapshotOptions): Promise<{ flow: FlowStatus | null; error?: string }> {
  const now = options.now ?? new Date();
  const result = await fromFirstReachable(options.sites ?? readingOrder(config), open, (db) =>
    flowStatus(config, db, { now, windowMs: options.windowMs, hours: options.hours }),
  );
  return 'value' in result ? { flow: result.value } : { flow: null, error: result.error };
}

/** The custody tally of the DAQ site's server, when a step makes verified copies. */
async function custodyFor(config: MeshConfig, open: OpenDatabase): Promise<Snapshot['custody']> {
  const custodial = [...config.steps, ...(config.run_steps ?? [])].some((s) => s.custody === true);
  const daq = config.sites[config.ingest.site];
  if (!custodial || !daq) return undefined;
  const server = serverOf(config, daq);
  try {
    return { server: server.name, tally: await custodyTally(open(server)) };
  } catch (error) {
    return { server: server.name, error: errorMessage(error) };
  }
}

/** Each versioned step's older records, as the server its agents claim on counts them. */
function olderVersions(config: MeshConfig, status: MeshStatus): Snapshot['older_versions'] {
  const out: NonNullable<Snapshot['older_versions']> = {};
  for (const step of config.steps) {
    const site = config.sites[step.site];
    if (step.version === undefined || !site) continue;
    const server = serverOf(config, site).name;
    const older = status.databases.find((d) => d.site === server)?.older_versions?.[step.name];
    if (older) out[step.name] = { ...older, server };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export async function buildSnapshot(config: MeshConfig, open: OpenDatabase, options: SnapshotOptions): Promise<Snapshot> {
  const now = options.now ?? new Date();
  // Everything at once: a server that is down fails fast (its parts come back empty), a slow one costs its own time only.
  const servers = readingOrder(config);
  const [status, shared, lost, resolutions, flow, custody] = await Promise.all([
    meshStatus(config, open, now),
    fromFirstReachable(servers, open, async (db) => ({ runs: await runOverview(db, config, now) })),
    Promise.all(servers.map(async (site) => ({ server: site.name, rows: await lostJobs(open(site)).catch(() => []) }))),
    Promise.all(
      servers.map(async (site) =>
        (
          (
            await open(site)
              .get<AuditDocument>(auditDocId(site.name))
              .catch(() => undefined)
          )?.recent ?? []
        )
          .slice(-10)
          .map((r) => ({ server: site.name, ...r })),
      ),
    ),
    flowFor(config, open, { ...options, now, sites: servers }),
    custodyFor(config, open),
  ]);
  const older = olderVersions(config, status);
  const alerts = await currentAlerts(config, open, status, flow.flow ? [flow.flow] : [], now);
  const failedTotal = Object.values(status.files.steps).reduce((sum, c) => sum + c.failed, 0);
  const failed = status.failed.slice(0, PROBLEMS_LIMIT * 2).map((f) => ({ ...f, server: f.servers[0] }));
  const runs = 'value' in shared ? shared.value.runs : [];
  for (const run of runs) run.failed = status.failed.filter((f) => f.run_name === run.run).length;
  return {
    generated: status.generated,
    database: status.database,
    summary: statusSummary(status, alerts, now),
    controls: status.controls ?? { paused: [], drained: [] },
    steps: config.steps.map((s) => s.name),
    pipeline: config.steps.map((s) => ({
      name: s.name,
      site: s.site,
      server: config.sites[s.site] ? serverOf(config, config.sites[s.site]).name : s.site,
      max_attempts: s.max_attempts,
    })),
    read_from: 'value' in shared ? shared.site.name : null,
    servers: status.databases.map((d) => ({
      site: d.site,
      url: publicUrl(d.url),
      reachable: d.reachable,
      ...(d.not_authorised ? { not_authorised: true as const } : {}),
      ...(d.unreachable ? { unreachable: true as const } : {}),
      ...(d.error ? { error: d.error } : {}),
      doc_count: d.doc_count,
      by_status: d.by_status,
      steps: d.steps,
      conflicts: d.conflicts,
    })),
    totals: status.files.steps,
    totals_from: status.files.steps_from,
    files: status.files,
    runs,
    ...(status.runs ? { run_documents: status.runs } : {}),
    ...(custody ? { custody } : {}),
    ...(older ? { older_versions: older } : {}),
    failed_capped: status.failed.length < failedTotal,
    problems: {
      failed,
      stale_claims: status.in_flight.filter((f) => f.expired).map((f) => ({ ...claimRow(f), lease_until: f.lease_until })),
      lost_jobs: onceByFile(lost),
      replication: status.replication,
      double_claims: status.double_claims,
      resolutions: resolutions.flat(),
      conflicts: status.files.conflicts,
      silent_agents: status.agents.filter((a) => silentFor(a, config, now) !== undefined),
    },
    in_flight: status.in_flight.filter((f) => !f.expired).map((f) => ({ ...claimRow(f), attempts: f.attempts })),
    agents: status.agents,
    flow: flow.flow,
    ...(flow.error ? { flow_error: flow.error } : {}),
    alerts,
  };
}

/** A claim as the page lists it: once per file and step, with the servers that hold it. */
function claimRow(f: FullMeshStatus['in_flight'][number]) {
  return { server: f.servers[0], servers: f.servers, doc: f.doc, step: f.step, agent: f.agent, site: f.site, lease_age_s: f.lease_age_s };
}
