/**
 * The ingest's side of the run documents (core/run-document.ts): after each scan, every run
 * seen gets its catalogued files appended as members (late members once a run step started),
 * and is closed once no new file of it came for `ingest.run_quiet_s` and none of its files is
 * still being written, or at once when `<run_name>.closed` is in the ingest directory.
 * Idempotent: a member already listed is not appended again, so a scan that died between the
 * file documents and the run document is completed by the next one.
 */
import type { DaqDocument } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { type RunDocument, type RunMember, closedBecause, newRunDocument, runDocumentId, withMember } from '../core/run-document.js';
import type { Database } from '../store/database.js';
import { documentsById, runRows } from '../store/runs.js';
import { update } from '../store/update.js';

export interface RunsReport {
  /** Run documents written this scan (created or appended to). */
  written: number;
  /** Files added to a run after one of its run steps had started: reported, never archived by that step. */
  late: Array<{ run: string; doc_id: string; file: string }>;
  closed: Array<{ run: string; by: 'quiet' | 'marker' }>;
  failed: Array<{ run: string; reason: string }>;
}

export interface RunIngestOptions {
  db: Database;
  site: string;
  /** The run pipeline's step names. */
  runSteps: readonly string[];
  quietS: number;
  now: () => Date;
  /** Whether `<run_name>.closed` is in the ingest directory. */
  hasMarker: (run: string) => boolean;
  /** Runs with a file still being written: not closed by quiet. */
  openRuns: ReadonlySet<string>;
}

/** The catalogue of one file as a run member; undefined until its checksum is recorded. */
function memberOf(doc: DaqDocument): RunMember | undefined {
  const sha256 = doc.checksum?.sha256;
  if (typeof sha256 !== 'string') return undefined;
  return { doc_id: doc._id, file: doc.file, size_in_bytes: doc.size_in_bytes, sha256 };
}

/** Records the runs of the file documents `ids` (created or already there), then closes the runs whose time has come. */
export async function recordRuns(ids: ReadonlyArray<{ id: string; runName: string }>, options: RunIngestOptions): Promise<RunsReport> {
  const report: RunsReport = { written: 0, late: [], closed: [], failed: [] };
  const byRun = new Map<string, string[]>();
  for (const { id, runName } of ids) byRun.set(runName, [...(byRun.get(runName) ?? []), id]);
  // Open runs without a file in this scan (their files moved, say) still close by quiet.
  for (const row of await runRows(options.db, 10_000))
    if (row.state === 'open' && row.run_name !== null && !byRun.has(row.run_name)) byRun.set(row.run_name, []);
  // The run documents in one read: a scan of a directory that holds many runs costs no read per run.
  const known = await documentsById(options.db, [...byRun.keys()].map(runDocumentId));
  for (const [run, memberIds] of byRun) {
    try {
      await recordRun(run, memberIds.sort(), known.get(runDocumentId(run)) as RunDocument | undefined, options, report);
    } catch (error) {
      report.failed.push({ run, reason: errorMessage(error) });
    }
  }
  return report;
}

async function recordRun(run: string, memberIds: string[], stored: RunDocument | undefined, options: RunIngestOptions, report: RunsReport): Promise<void> {
  // Only the files not listed yet are read: a closed run seen again costs nothing.
  const listed = new Set([...(stored?.members ?? []), ...(stored?.late_members ?? [])].map((m) => m.doc_id));
  const unlisted = memberIds.filter((id) => !listed.has(id));
  if (stored?.closed_at !== undefined && unlisted.length === 0) return;
  const docs = await documentsById(options.db, unlisted);
  const members = unlisted.flatMap((id) => {
    const doc = docs.get(id);
    const member = doc ? memberOf(doc) : undefined;
    return member ? [member] : [];
  });
  const by = `${options.site}/ingest`;
  let late: RunMember[] = [];
  let closedBy: 'quiet' | 'marker' | undefined;
  const result = await update<RunDocument>(
    options.db,
    runDocumentId(run),
    (current) => {
      late = [];
      closedBy = undefined;
      const at = options.now().toISOString();
      if (!current && members.length === 0) return { keep: true };
      let doc = current ?? newRunDocument(run, members[0], at, by, options.db.user);
      for (const member of members) {
        const next = withMember(doc, member, options.runSteps, at);
        if (next.late) late.push(member);
        doc = next.doc;
      }
      if (doc.closed_at === undefined) {
        const marker = options.hasMarker(run);
        const because = closedBecause(doc, options.quietS, marker, options.now());
        if (because === 'marker' || (because === 'quiet' && !options.openRuns.has(run))) {
          closedBy = because;
          doc = { ...doc, closed_at: at, closed_by: because };
        }
      }
      return doc === current ? { keep: true } : { write: doc };
    },
    { create: true, ...(stored ? { seen: stored } : {}) },
  );
  if (result.kind === 'written' && result.changed) {
    report.written++;
    for (const m of late) report.late.push({ run, doc_id: m.doc_id, file: m.file });
    if (closedBy) report.closed.push({ run, by: closedBy });
  } else if (result.kind === 'illegal' || result.kind === 'conflict') {
    report.failed.push({ run, reason: result.error.message });
  }
}
