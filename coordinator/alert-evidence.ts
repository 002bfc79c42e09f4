/**
 * What the alerts of a stuck chain need beyond `mesh status` (coordinator/stuck-alerts.ts), read
 * from each reachable server with bounded queries: per step, how long its ready documents have
 * waited (a sample of the oldest), its claims in flight and when it last finished; per batch
 * site, its lost jobs since its last success; and the trigger records (how the runs a site's
 * agents start elsewhere ended). The evaluation is pure and merges the servers (replicas).
 */
import type { MeshConfig } from '../config/types.js';
import type { DaqDocument } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import { type TriggerRecord, readTriggerRecords } from '../store/triggers.js';
import { type OpenDatabase, distinctServers } from './servers.js';
import type { MeshStatus } from './status.js';

/** Ready documents read per step to tell how long they have waited (the oldest retry times first). */
const READY_SAMPLE = 10;
/** Claims in flight read per step (their site and start; no document bodies). */
const CLAIM_ROWS = 500;
/** Lost batch jobs read per step, newest first. */
const LOST_ROWS = 50;

export interface StepEvidence {
  /** The earliest moment since which one of the sampled ready documents has been waiting (ISO), null when none is ready. */
  waiting_since: string | null;
  /** Claims in flight whose lease has not ended. */
  live_claims: number;
  /** When the newest claim in flight started, null when none. */
  newest_claim: string | null;
  /** When the step last finished for any file, null when never. */
  last_finished: string | null;
}

export interface SiteClaims {
  /** Claims in flight held by agents of the site (at most CLAIM_ROWS per step are read). */
  count: number;
  capped: boolean;
  newest_started: string | null;
}

export interface LostSince {
  /** Lost batch jobs of the site's steps that started after the site last finished a step. */
  count: number;
  oldest_started: string | null;
  newest: { doc: string; step: string; reason: string; started: string | null } | null;
  capped: boolean;
}

export interface ServerEvidence {
  site: string;
  error?: string;
  steps: Record<string, StepEvidence>;
  claims: Record<string, SiteClaims>;
  /** Per batch site (a site with `batch` settings that owns a step). */
  lost: Record<string, LostSince>;
  triggers: TriggerRecord[];
}

export interface AlertEvidence {
  servers: ServerEvidence[];
}

/** The moment a ready document started waiting for `step`: its last status change, or its retry time when later. */
export function readySince(doc: DaqDocument, step: string): string | undefined {
  const times = [Array.isArray(doc.history) ? doc.history.at(-1)?.at : undefined, doc.pending?.[step]?.retry_after]
    .filter((t): t is string => typeof t === 'string')
    .map((t) => Date.parse(t))
    .filter(Number.isFinite);
  return times.length > 0 ? new Date(Math.max(...times)).toISOString() : undefined;
}

function earliest(a: string | null, b: string | null | undefined): string | null {
  if (!b) return a;
  return a === null || Date.parse(b) < Date.parse(a) ? b : a;
}

function latest(a: string | null, b: string | null | undefined): string | null {
  if (!b) return a;
  return a === null || Date.parse(b) > Date.parse(a) ? b : a;
}

async function serverEvidence(config: MeshConfig, db: Database, site: string, now: Date): Promise<ServerEvidence> {
  const iso = now.toISOString();
  const evidence: ServerEvidence = { site, steps: {}, claims: {}, lost: {}, triggers: [] };
  const batchSteps = config.steps.filter((s) => config.sites[s.site]?.batch);
  // Every query at once: a server's cost is then its slowest query, not their sum.
  const [perStep, lostRows, triggers] = await Promise.all([
    Promise.all(
      config.steps.map((step) =>
        Promise.all([
          files.ready(db, step.name, { until: iso, limit: READY_SAMPLE }),
          files.claimsOfStep(db, step.name, CLAIM_ROWS),
          files.lastFinished(db, step.name),
        ]),
      ),
    ),
    Promise.all(batchSteps.map((step) => files.lostJobsOf(db, step.name, LOST_ROWS))),
    readTriggerRecords(db),
  ]);
  const finished = new Map<string, string | null>();
  config.steps.forEach((step, i) => {
    const [ready, claims, last] = perStep[i];
    let waiting: string | null = null;
    for (const doc of ready) waiting = earliest(waiting, readySince(doc, step.name));
    let newestClaim: string | null = null;
    let live = 0;
    for (const claim of claims) {
      newestClaim = latest(newestClaim, claim.started);
      if (claim.lease_until && Date.parse(claim.lease_until) > now.getTime()) live++;
      const holder = claim.site ?? 'unknown';
      const held = (evidence.claims[holder] ??= { count: 0, capped: false, newest_started: null });
      held.count++;
      held.capped ||= claims.length >= CLAIM_ROWS;
      held.newest_started = latest(held.newest_started, claim.started);
    }
    finished.set(step.name, last ?? null);
    evidence.steps[step.name] = { waiting_since: waiting, live_claims: live, newest_claim: newestClaim, last_finished: last ?? null };
  });
  const lostOf = new Map(batchSteps.map((step, i) => [step.name, lostRows[i]]));
  for (const owner of Object.values(config.sites).filter((s) => s.batch)) {
    const steps = config.steps.filter((s) => s.site === owner.name);
    if (steps.length === 0) continue;
    let success: string | null = null;
    for (const step of steps) success = latest(success, finished.get(step.name));
    const lost: LostSince = { count: 0, oldest_started: null, newest: null, capped: false };
    for (const step of steps) {
      const rows = lostOf.get(step.name) ?? [];
      const since = rows.filter((r) => success === null || (r.started !== null && Date.parse(r.started) > Date.parse(success)));
      lost.count += since.length;
      lost.capped ||= rows.length >= LOST_ROWS && since.length === rows.length;
      for (const r of since) {
        lost.oldest_started = earliest(lost.oldest_started, r.started);
        if (!lost.newest || (r.started !== null && (lost.newest.started === null || Date.parse(r.started) > Date.parse(lost.newest.started))))
          lost.newest = { doc: r.doc, step: r.step, reason: r.reason, started: r.started };
      }
    }
    evidence.lost[owner.name] = lost;
  }
  evidence.triggers = triggers;
  return evidence;
}

/** The evidence of every server `status` found reachable; a server failing part-way gives its error and is left out of the evaluation. */
export async function readAlertEvidence(config: MeshConfig, open: OpenDatabase, status: MeshStatus, now: Date): Promise<AlertEvidence> {
  const reachable = new Set(status.databases.filter((d) => d.reachable).map((d) => d.site));
  const servers = await Promise.all(
    distinctServers(config)
      .filter((site) => reachable.has(site.name))
      .map((site) =>
        serverEvidence(config, open(site), site.name, now).catch((error: unknown): ServerEvidence => ({
          site: site.name,
          error: errorMessage(error),
          steps: {},
          claims: {},
          lost: {},
          triggers: [],
        })),
      ),
  );
  return { servers };
}
