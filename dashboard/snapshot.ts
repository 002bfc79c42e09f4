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
import { type AgentStatus, type MeshStatus, type StepCounts, distinctServers, meshStatus } from '../coordinator/status.js';
import { publicUrl } from './databases.js';

export const RUNS_LIMIT = 40;
const PROBLEMS_LIMIT = 50;

export interface RunOverview {
  daq_host: string;
  run: string;
  files: number;
  latest_file: number;
  latest?: { doc: string; status: string };
}

export interface Snapshot {
  generated: string;
  database: string;
  steps: string[];
  /** The server the runs, flow and navigation were read from. */
  read_from: string | null;
  servers: Array<{
    site: string;
    url: string;
    reachable: boolean;
    not_authorised?: true;
    error?: string;
    doc_count: number;
    by_status: Record<string, number>;
    steps: Record<string, StepCounts>;
    conflicts: number;
  }>;
  totals: Record<string, StepCounts>;
  runs: RunOverview[];
  problems: {
    failed: Array<{ server: string; doc: string; step: string; reason: string; exit_code: number | null; stderr_tail?: string }>;
    stale_claims: Array<{ server: string; doc: string; step: string; agent: string; site: string; lease_until: string; lease_age_s: number }>;
    lost_jobs: Array<{ server: string; doc: string; step: string; reason: string; system: string | null; job: string | null; status: string }>;
    replication: MeshStatus['replication'];
    double_claims: MeshStatus['double_claims'];
    /** The audit's latest resolutions, per server. */
    resolutions: Array<{ server: string } & AuditDocument['recent'][number]>;
    conflicts: number;
    silent_agents: AgentStatus[];
  };
  in_flight: Array<{ server: string; doc: string; step: string; agent: string; site: string; attempts: number; lease_age_s: number }>;
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
 * Per DAQ host and run, the highest file number (the `_stats` reduce) and that file's status:
 * the last `limit` (host, run) pairs of the view, shown by host, the newest run first.
 */
export async function runOverview(db: Database, limit = RUNS_LIMIT): Promise<RunOverview[]> {
  const runs = (await files.hostRuns(db, limit)).map((r) => ({ daq_host: r.host, run: r.run, files: r.files, latest_file: r.latest_file }) as RunOverview);
  runs.sort((a, b) => (a.daq_host === b.daq_host ? (a.run < b.run ? 1 : a.run > b.run ? -1 : 0) : a.daq_host < b.daq_host ? -1 : 1));
  if (runs.length === 0) return runs;
  const latest = await files.filesAt(
    db,
    runs.map((r) => [r.run, r.latest_file]),
  );
  const byKey = new Map(latest.map((f) => [JSON.stringify([f.run, f.file]), { doc: f.doc, status: f.status }]));
  for (const run of runs) run.latest = byKey.get(JSON.stringify([run.run, run.latest_file]));
  return runs;
}

async function lostJobs(
  db: Database,
): Promise<Array<{ doc: string; step: string; reason: string; system: string | null; job: string | null; status: string }>> {
  return files.lostJobs(db, PROBLEMS_LIMIT);
}

function sumCounts(into: Record<string, StepCounts>, from: Record<string, StepCounts>): void {
  for (const [step, counts] of Object.entries(from)) {
    const total = (into[step] ??= { done: 0, ready: 0, queued: 0, in_progress: 0, failed: 0 });
    for (const key of Object.keys(total) as Array<keyof StepCounts>) total[key] += counts[key];
  }
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

export async function buildSnapshot(config: MeshConfig, open: OpenDatabase, options: SnapshotOptions): Promise<Snapshot> {
  const now = options.now ?? new Date();
  // Everything at once: a server that is down fails fast (its parts come back empty), a slow one costs its own time only.
  const servers = readingOrder(config);
  const [status, shared, lost, resolutions, flow] = await Promise.all([
    meshStatus(config, open, now),
    fromFirstReachable(servers, open, async (db) => ({ runs: await runOverview(db) })),
    Promise.all(servers.map(async (site) => (await lostJobs(open(site)).catch(() => [])).map((j) => ({ server: site.name, ...j })))),
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
  ]);
  const totals: Record<string, StepCounts> = {};
  for (const db of status.databases) if (db.reachable) sumCounts(totals, db.steps);
  const alerts = await currentAlerts(config, open, status, flow.flow ? [flow.flow] : [], now);
  return {
    generated: status.generated,
    database: status.database,
    steps: config.steps.map((s) => s.name),
    read_from: 'value' in shared ? shared.site.name : null,
    servers: status.databases.map((d) => ({
      site: d.site,
      url: publicUrl(d.url),
      reachable: d.reachable,
      ...(d.not_authorised ? { not_authorised: true as const } : {}),
      ...(d.error ? { error: d.error } : {}),
      doc_count: d.doc_count,
      by_status: d.by_status,
      steps: d.steps,
      conflicts: d.conflicts,
    })),
    totals,
    runs: 'value' in shared ? shared.value.runs : [],
    problems: {
      failed: status.databases.flatMap((d) => d.failed.map((f) => ({ server: d.site, ...f }))).slice(0, PROBLEMS_LIMIT * 2),
      stale_claims: status.databases.flatMap((d) =>
        d.in_flight
          .filter((f) => f.expired)
          .map((f) => ({ server: d.site, doc: f.doc, step: f.step, agent: f.agent, site: f.site, lease_until: f.lease_until, lease_age_s: f.lease_age_s })),
      ),
      lost_jobs: lost.flat(),
      replication: status.replication,
      double_claims: status.double_claims,
      resolutions: resolutions.flat(),
      conflicts: status.databases.reduce((sum, d) => sum + d.conflicts, 0),
      silent_agents: status.agents.filter((a) => silentFor(a, config, now) !== undefined),
    },
    in_flight: status.databases.flatMap((d) =>
      d.in_flight
        .filter((f) => !f.expired)
        .map((f) => ({ server: d.site, doc: f.doc, step: f.step, agent: f.agent, site: f.site, attempts: f.attempts, lease_age_s: f.lease_age_s })),
    ),
    agents: status.agents,
    flow: flow.flow,
    ...(flow.error ? { flow_error: flow.error } : {}),
    alerts,
  };
}
