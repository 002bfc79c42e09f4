/**
 * `mesh purge` at the DAQ site: deletes raw files from the DAQ buffer once enough verified
 * copies exist elsewhere, reading the documents of the site's own server only (so the proof
 * arrived over the same replication as everything else: a record still on its way from
 * another server does not count yet).
 *
 * A file goes when (core/custody.ts custodyVerdict) at least `copies` distinct sites other than
 * the DAQ's hold a copy that agrees with the catalogued checksum and size, no copy disagrees, it
 * was closed before `closedBefore`, and the file on disk is still the catalogued one: a regular
 * file with the catalogued size and sha256, read again now.
 *
 * Crash safety: the purge is recorded in the document first (compare-and-set on the revision
 * judged), the file is removed after. A crash in between leaves a recorded purge and the file:
 * the next run finds it among the purged documents and finishes it (after checking again that
 * the file is the catalogued one and that the rule holds: a record alone deletes nothing). The other order could leave a deleted file that no document
 * says was deleted, nor on which copies it relied: never delete what is not recorded.
 */
import { lstat, unlink } from 'node:fs/promises';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { sha256File } from '../core/checksum.js';
import { type CustodyRecord, type HoldReason, custodyVerdict, purgedOf, runDocumentId } from '../core/custody.js';
import type { DaqDocument } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { filesByCustody, readDocument, recordPurge } from '../store/custody.js';
import type { Database } from '../store/database.js';

/** Documents read per page. */
const PAGE = 200;
/** Examples kept per reason held back (the count is complete). */
const EXAMPLES = 10;

export interface PurgeOptions {
  copies: number;
  /** Files closed after this moment are kept (now minus --older-than). */
  closedBefore: Date;
  /** Only say what would be deleted. */
  dryRun: boolean;
  now: () => Date;
  signal?: AbortSignal;
  /** Called as files are examined (for a progress line). */
  progress?: (examined: number, bytesRead: number) => void;
}

export interface HeldBack {
  files: number;
  bytes: number;
  examples: Array<{ doc: string; file: string; detail: string }>;
}

export interface PurgeSummary {
  dry_run: boolean;
  copies: number;
  closed_before: string;
  /** Catalogued files not deleted before this run, looked at. */
  examined: number;
  /** Deleted by this run (or, in a dry run, that would be). */
  deleted: { files: number; bytes: number };
  /** Recorded as purged by an earlier run that did not get to delete the file: deleted now (or would be). */
  finished: { files: number; bytes: number };
  /** Recorded as purged and gone from the disk: nothing to do. */
  already: number;
  /** Files kept, by reason. */
  held: Partial<Record<HoldReason, HeldBack>>;
  /** Bytes read again to compare with the catalogue. */
  bytes_read: number;
}

export interface PurgeContext {
  config: MeshConfig;
  site: SiteConfig;
  db: Database;
  /** `site/agent` for the purge record's `by`. */
  by: string;
  logger: Logger;
}

type DiskCheck = { ok: true } | { ok: false; reason: HoldReason; detail: string; gone?: boolean };

/** Whether the file at `doc.file` is still the one catalogued: a regular file of its size and sha256 (read now). */
async function diskCheck(doc: DaqDocument, summary: PurgeSummary, signal?: AbortSignal): Promise<DiskCheck> {
  let info;
  try {
    info = await lstat(doc.file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { ok: false, reason: 'missing on disk', detail: 'no such file', gone: true };
    return { ok: false, reason: 'unreadable', detail: errorMessage(error) };
  }
  if (!info.isFile()) return { ok: false, reason: 'not a regular file', detail: 'a symbolic link, directory or device is never deleted' };
  if (info.size !== doc.size_in_bytes) return { ok: false, reason: 'changed on disk', detail: `${info.size} bytes on disk, ${doc.size_in_bytes} catalogued` };
  let sha256: string;
  try {
    sha256 = await sha256File(doc.file, signal);
  } catch (error) {
    return { ok: false, reason: 'unreadable', detail: errorMessage(error) };
  }
  summary.bytes_read += info.size;
  if (sha256 !== doc.checksum?.sha256)
    return { ok: false, reason: 'changed on disk', detail: `sha256 on disk ${sha256.slice(0, 12)}…, catalogued ${String(doc.checksum?.sha256).slice(0, 12)}…` };
  return { ok: true };
}

function hold(summary: PurgeSummary, doc: DaqDocument, reason: HoldReason, detail: string): void {
  const held = (summary.held[reason] ??= { files: 0, bytes: 0, examples: [] });
  held.files++;
  held.bytes += typeof doc.size_in_bytes === 'number' ? doc.size_in_bytes : 0;
  if (held.examples.length < EXAMPLES) held.examples.push({ doc: doc._id, file: doc.file, detail });
}

/** Runs one purge of the DAQ buffer; see the file's comment for what goes and in what order. */
export async function purgeDaqBuffer(ctx: PurgeContext, options: PurgeOptions): Promise<PurgeSummary> {
  const summary: PurgeSummary = {
    dry_run: options.dryRun,
    copies: options.copies,
    closed_before: options.closedBefore.toISOString(),
    examined: 0,
    deleted: { files: 0, bytes: 0 },
    finished: { files: 0, bytes: 0 },
    already: 0,
    held: {},
    bytes_read: 0,
  };
  const log = ctx.logger;
  const tick = () => options.progress?.(summary.examined + summary.already + summary.finished.files, summary.bytes_read);

  const runs = new Map<string, object | undefined>();
  const runOf = async (name: string): Promise<object | undefined> => {
    if (!runs.has(name)) runs.set(name, await readDocument<object>(ctx.db, runDocumentId(name)));
    return runs.get(name);
  };
  const rule = { copies: options.copies, daqSite: ctx.site.name, closedBefore: options.closedBefore };

  // First the purges recorded by a run that stopped before deleting their file.
  for await (const doc of pages(ctx.db, 'purged')) {
    if (options.signal?.aborted) break;
    const purged = purgedOf(doc);
    if (!purged || purged.site !== ctx.site.name) continue;
    const disk = await diskCheck(doc, summary, options.signal);
    // A file still there is finished only if today's rule would delete it too: a purge record
    // alone (whoever wrote it) never deletes a file that lacks its verified copies.
    const verdict = disk.ok ? custodyVerdict(doc, typeof doc.run_name === 'string' ? await runOf(doc.run_name) : undefined, rule) : undefined;
    if (!disk.ok && disk.gone) summary.already++;
    else if (verdict?.kind === 'hold') hold(summary, doc, verdict.reason, `recorded as purged, not deleted: ${verdict.detail}`);
    else if (!disk.ok) hold(summary, doc, disk.reason, `recorded as purged but the file is not the catalogued one: ${disk.detail}`);
    else {
      if (!options.dryRun) {
        await unlink(doc.file);
        log.info({ doc: doc._id, file: doc.file }, 'purge finished: the file recorded as purged is deleted');
      }
      summary.finished.files++;
      summary.finished.bytes += doc.size_in_bytes;
    }
    tick();
  }

  for await (const doc of pages(ctx.db, 'kept')) {
    if (options.signal?.aborted) break;
    summary.examined++;
    const verdict = custodyVerdict(doc, typeof doc.run_name === 'string' ? await runOf(doc.run_name) : undefined, rule);
    if (verdict.kind === 'hold') {
      hold(summary, doc, verdict.reason, verdict.detail);
      tick();
      continue;
    }
    const disk = await diskCheck(doc, summary, options.signal);
    if (!disk.ok) {
      hold(summary, doc, disk.reason, disk.detail);
      if (disk.reason === 'changed on disk') log.error({ doc: doc._id, file: doc.file }, `kept: the file is not the catalogued one: ${disk.detail}`);
    } else if (options.dryRun) {
      summary.deleted.files++;
      summary.deleted.bytes += doc.size_in_bytes;
    } else if (await recordThenDelete(ctx, doc, verdict.relied, options.now())) {
      summary.deleted.files++;
      summary.deleted.bytes += doc.size_in_bytes;
    } else {
      hold(summary, doc, 'document changed', 'written by someone else while it was judged: the next run judges it again');
    }
    tick();
  }
  return summary;
}

/** Records the purge on the revision judged, then deletes the file; false (nothing deleted) when the document changed meanwhile. */
async function recordThenDelete(ctx: PurgeContext, doc: DaqDocument, relied: CustodyRecord[], now: Date): Promise<boolean> {
  const result = await recordPurge(ctx.db, doc, { at: now.toISOString(), by: ctx.by, user: ctx.db.user, site: ctx.site.name, file: doc.file, custody: relied });
  if (result.kind === 'conflict') return false;
  if (result.kind !== 'written') throw result.kind === 'gone' ? new Error(`${doc._id} disappeared`) : result.error;
  // Recorded (or recorded before by another run): only now may the file go.
  await unlink(doc.file).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  ctx.logger.info({ doc: doc._id, file: doc.file, copies: relied.map((r) => r.site) }, 'purged');
  return true;
}

async function* pages(db: Database, state: 'kept' | 'purged'): AsyncGenerator<DaqDocument> {
  let after: Parameters<typeof filesByCustody>[3];
  for (;;) {
    const page = await filesByCustody(db, state, PAGE, after);
    yield* page.docs;
    if (!page.last || page.docs.length < PAGE) return;
    after = page.last;
  }
}
