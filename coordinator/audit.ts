/**
 * The double-claim audit of one server: documents with replication conflicts (two sites ran a
 * step on two servers while they could not replicate) are merged deterministically, so that
 * every server that runs the audit keeps the same leaf and writes the same merged document.
 *
 * Winner, among the live leaves: a leaf that keeps the document rules (core/invariants.ts,
 * core/provenance.ts: its type, a consistent status, a history from its creation) before one
 * that does not, which is never picked (the conflict is left for an operator); then a `bad`
 * leaf (bad is terminal: no resolution takes a document out of it); then the one furthest
 * along the pipeline (more ok step records), then by status (good > in progress > queued >
 * failed > closed), then CouchDB's own order (higher revision number, then the lexically
 * greater revision). The merged document is
 * the winner plus `duplicates[]`, one entry per run that only a losing leaf recorded (and the
 * custody records and purge only a loser has, core/custody.ts mergedCustody); it is
 * written on top of the winning leaf and the losing leaves are deleted. The merged content
 * depends on the leaves alone (no clock, no site name), so two servers resolving the same
 * conflict write the same revision where revisions are content-addressed.
 */
import { type AuditDocument, conflictedIds, deleteLeaves, liveLeaves, recordAudit } from '../store/audit.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { type DaqDocument, type StepRecord, isDone, parseStatus, stepRecord } from '../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import { statusProblems } from '../core/invariants.js';
import type { Logger } from '../core/log.js';
import { mergedCustody } from '../core/custody.js';
import { creationProblems } from '../core/provenance.js';

export interface DuplicateRun {
  site: string | null;
  agent: string | null;
  step: string;
  started: string | null;
  result: { ok: boolean | null; exit_code: number | null; file: string | null; checksum: { sha256: string } | null };
  /** The losing revision that recorded the run. */
  rev: string;
}

export interface AuditResult {
  site: string;
  detected: number;
  resolved: number;
  errors: Array<{ doc: string; error: string }>;
}

const STATUS_RANK: Record<string, number> = { good: 5, in_progress: 4, queued: 3, failed: 2, closed: 1 };

function okCount(doc: DaqDocument, steps: readonly string[]): number {
  return steps.filter((s) => isDone(doc, s)).length;
}

function revParts(rev: string | undefined): [number, string] {
  const [n, hash] = String(rev).split('-');
  return [Number.parseInt(n, 10) || 0, hash ?? ''];
}

/** Whether a leaf keeps the rules every write is held to: it may win. */
export function keepsRules(leaf: DaqDocument, steps: readonly string[], docType: string): boolean {
  return leaf.type === docType && statusProblems(leaf, steps).length === 0 && creationProblems(leaf, steps).length === 0;
}

/** Positive when leaf `a` wins over leaf `b`. Total and deterministic: two distinct leaves never compare equal. */
export function compareLeaves(a: DaqDocument, b: DaqDocument, steps: readonly string[], docType = 'daqdocument'): number {
  const valid = Number(keepsRules(a, steps, docType)) - Number(keepsRules(b, steps, docType));
  if (valid !== 0) return valid;
  const bad = Number(a.status === 'bad') - Number(b.status === 'bad');
  if (bad !== 0) return bad;
  const ok = okCount(a, steps) - okCount(b, steps);
  if (ok !== 0) return ok;
  const rank = (d: DaqDocument) => STATUS_RANK[parseStatus(d.status, steps)?.kind ?? ''] ?? -1;
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  const [na, ha] = revParts(a._rev);
  const [nb, hb] = revParts(b._rev);
  if (na !== nb) return na - nb;
  return ha < hb ? -1 : ha > hb ? 1 : 0;
}

/** The leaves, best first. */
export function rankLeaves(leaves: readonly DaqDocument[], steps: readonly string[], docType = 'daqdocument'): DaqDocument[] {
  return [...leaves].sort((a, b) => compareLeaves(b, a, steps, docType));
}

const runKey = (r: Pick<DuplicateRun, 'step' | 'site' | 'agent' | 'started'>): string => JSON.stringify([r.step, r.site, r.agent, r.started]);

function runOf(step: string, record: StepRecord, rev: string): DuplicateRun {
  return {
    site: record.site ?? null,
    agent: record.agent ?? null,
    step,
    started: record.started ?? null,
    result: { ok: record.ok ?? null, exit_code: record.exit_code ?? null, file: record.file ?? null, checksum: record.checksum ?? null },
    rev,
  };
}

/**
 * The winner with `duplicates[]` extended by every run a loser recorded and the winner did not
 * (same step, site, agent and start = same run); losers' own duplicates are carried over. Pure.
 */
export function mergeLeaves(winner: DaqDocument, losers: readonly DaqDocument[], steps: readonly string[]): DaqDocument {
  const { _conflicts: _c, _revisions: _r, _revs_info: _i, ...base } = winner as DaqDocument & { _revisions?: unknown; _revs_info?: unknown };
  const kept = new Set(
    steps.flatMap((s) => {
      const record = stepRecord(winner, s);
      return record ? [runKey(runOf(s, record, ''))] : [];
    }),
  );
  const duplicates: DuplicateRun[] = Array.isArray(winner.duplicates) ? [...(winner.duplicates as DuplicateRun[])] : [];
  const seen = new Set([...kept, ...duplicates.map(runKey)]);
  const add = (run: DuplicateRun) => {
    if (seen.has(runKey(run))) return;
    seen.add(runKey(run));
    duplicates.push(run);
  };
  for (const loser of losers) {
    for (const step of steps) {
      const record = stepRecord(loser, step);
      if (record) add(runOf(step, record, loser._rev as string));
    }
    if (Array.isArray(loser.duplicates)) for (const run of loser.duplicates as DuplicateRun[]) add(run);
  }
  // Custody records and a purge only a loser recorded are kept too (core/custody.ts).
  return { ...base, duplicates, ...mergedCustody(winner, losers) } as DaqDocument;
}

type Outcome = { kind: 'no-conflict' } | { kind: 'changed' } | { kind: 'resolved'; kept: string; dropped: string[]; duplicates: number };

/** Resolves one conflicted document; `changed` when a leaf moved meanwhile (the next round looks again). */
async function resolve(db: Database, id: string, steps: readonly string[], docType: string): Promise<Outcome> {
  const leaves = await liveLeaves(db, id);
  if (leaves.length < 2) return { kind: 'no-conflict' };
  const [winner, ...losers] = rankLeaves(leaves, steps, docType);
  if (!keepsRules(winner, steps, docType)) {
    throw new MeshError(
      'DOCUMENT_MALFORMED',
      `${id}: no revision of its ${leaves.length} keeps the document rules (${[...statusProblems(winner, steps), ...creationProblems(winner, steps)].join('; ') || `type ${JSON.stringify(winner.type)}`}); left in conflict for an operator`,
    );
  }
  const merged = mergeLeaves(winner, losers, steps);
  const added = (merged.duplicates as unknown[]).length - (Array.isArray(winner.duplicates) ? winner.duplicates.length : 0);
  let kept: string;
  try {
    kept = await db.put(merged);
    await deleteLeaves(db, id, losers);
  } catch (error) {
    if (isMeshError(error, 'CONFLICT')) return { kind: 'changed' };
    // A refusal (403) is reported and every leaf kept: deleting the losers first would lose their provenance if the merge failed again.
    throw error;
  }
  return { kind: 'resolved', kept, dropped: losers.map((l) => l._rev as string), duplicates: added };
}

/** Audits the server of `site` (its data database `db`): finds, merges and counts double claims. */
export async function auditServer(config: MeshConfig, site: SiteConfig, db: Database, logger: Logger, now = new Date()): Promise<AuditResult> {
  const steps = config.steps.map((s) => s.name);
  const log = logger.child({ audit: site.name });
  const result: AuditResult = { site: site.name, detected: 0, resolved: 0, errors: [] };
  const resolutions: AuditDocument['recent'] = [];
  for (const id of await conflictedIds(db)) {
    try {
      const done = await resolve(db, id, steps, config.doc_type);
      if (done.kind === 'no-conflict') continue;
      result.detected += 1;
      if (done.kind !== 'resolved') continue;
      resolutions.push({ doc: id, kept: done.kept, dropped: done.dropped, duplicates: done.duplicates, at: now.toISOString() });
      log.warn({ doc: id, kept: done.kept, dropped: done.dropped, duplicates: done.duplicates }, 'double claim resolved');
    } catch (error) {
      result.errors.push({ doc: id, error: errorMessage(error) });
      log.error({ doc: id, err: errorMessage(error) }, 'double claim not resolved');
    }
  }
  result.resolved = resolutions.length;
  await recordAudit(db, site.name, result.detected, resolutions, now);
  return result;
}
