import type { MeshConfig, SiteConfig } from '../config/types.js';
import type { Database } from '../core/couch.js';
import { errorMessage } from '../core/errors.js';

export interface StepCounts {
  done: number;
  ready: number;
  queued: number;
  in_progress: number;
  failed: number;
}

export interface DatabaseStatus {
  site: string;
  url: string;
  reachable: boolean;
  error?: string;
  doc_count: number;
  by_status: Record<string, number>;
  steps: Record<string, StepCounts>;
  conflicts: number;
  in_flight: Array<{ doc: string; step: string; agent: string; site: string; attempts: number; lease_until: string; lease_age_s: number; expired: boolean }>;
  failed: Array<{ doc: string; step: string; reason: string; exit_code: number | null; stderr_tail?: string }>;
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
}

export interface MeshStatus {
  generated: string;
  database: string;
  databases: DatabaseStatus[];
  agents: AgentStatus[];
}

const LIST_LIMIT = 50;

/** One entry per distinct server: the site that owns it (its credentials) names it. */
export function distinctServers(config: MeshConfig): SiteConfig[] {
  const byUrl = new Map<string, SiteConfig>();
  for (const site of Object.values(config.sites)) {
    const known = byUrl.get(site.server);
    if (!known || (known.credentials_of !== known.name && site.credentials_of === site.name)) byUrl.set(site.server, site);
  }
  return [...byUrl.values()];
}

/** Counts from reduce views only, so the answer stays fast however many documents there are. */
export async function databaseStatus(config: MeshConfig, site: SiteConfig, db: Database, now: Date): Promise<{ db: DatabaseStatus; agents: AgentStatus[] }> {
  const base: DatabaseStatus = { site: site.name, url: site.server, reachable: false, doc_count: 0, by_status: {}, steps: {}, conflicts: 0, in_flight: [], failed: [] };
  try {
    const byStatus = await db.view<number>('mesh', 'by_status', { group: true });
    for (const row of byStatus.rows) base.by_status[String(row.key)] = row.value;
    base.reachable = true;
  } catch (error) {
    return { db: { ...base, error: errorMessage(error) }, agents: [] };
  }
  base.doc_count = Object.values(base.by_status).reduce((a, b) => a + b, 0);
  const done = await db.view<number>('mesh', 'done', { group: true });
  const doneBy = new Map(done.rows.map((r) => [String(r.key), r.value]));
  const iso = now.toISOString();
  for (const step of config.steps) {
    const ready = await db.view<number>('mesh', 'ready', { startkey: [step.name, ''], endkey: [step.name, iso] });
    base.steps[step.name] = {
      done: doneBy.get(step.name) ?? 0,
      ready: ready.rows[0]?.value ?? 0,
      queued: base.by_status[`${step.name} queued`] ?? 0,
      in_progress: base.by_status[`${step.name} in progress`] ?? 0,
      failed: base.by_status[`${step.name} failed`] ?? 0,
    };
  }
  const conflicts = await db.view<number>('mesh', 'conflicts', {});
  base.conflicts = conflicts.rows[0]?.value ?? 0;

  const inFlight = await db.view<{ agent: string; site: string; attempts: number; started?: string }>('mesh', 'in_flight', { reduce: false, limit: LIST_LIMIT });
  base.in_flight = inFlight.rows.map((r) => {
    const [step, leaseUntil] = r.key as [string, string];
    const lease = Date.parse(leaseUntil);
    const since = Date.parse(r.value.started ?? leaseUntil);
    return { doc: r.id ?? '', step, agent: r.value.agent, site: r.value.site, attempts: r.value.attempts, lease_until: leaseUntil, lease_age_s: Math.round((now.getTime() - since) / 1000), expired: lease <= now.getTime() };
  });
  const failed = await db.view<{ reason?: string; exit_code?: number | null; stderr_tail?: string }>('mesh', 'failed', { reduce: false, limit: LIST_LIMIT });
  base.failed = failed.rows.map((r) => ({ doc: r.id ?? '', step: String(r.key), reason: r.value?.reason ?? 'unknown', exit_code: r.value?.exit_code ?? null, stderr_tail: r.value?.stderr_tail }));

  const agentRows = await db.allDocs<{ site: string; agent: string; host: string; state: string; last_seen: string; running: Array<{ doc: string; step: string }> }>({ startkey: 'mesh-agent:', endkey: 'mesh-agent:\ufff0', include_docs: true });
  const agents = agentRows.rows.flatMap((r) =>
    r.doc ? [{ site: r.doc.site, agent: r.doc.agent, host: r.doc.host, state: r.doc.state, last_seen: r.doc.last_seen, age_s: Math.round((now.getTime() - Date.parse(r.doc.last_seen)) / 1000), running: r.doc.running ?? [], server: site.name }] : [],
  );
  return { db: base, agents };
}

export async function meshStatus(config: MeshConfig, open: (site: SiteConfig) => Database, now = new Date()): Promise<MeshStatus> {
  const results = await Promise.all(distinctServers(config).map((site) => databaseStatus(config, site, open(site), now)));
  return { generated: now.toISOString(), database: config.database, databases: results.map((r) => r.db), agents: results.flatMap((r) => r.agents) };
}
