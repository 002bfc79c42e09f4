import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { IngestConfig } from '../config/types.js';
import { sha256File } from '../core/checksum.js';
import type { Database } from '../core/couch.js';
import type { DaqDocument } from '../core/document.js';
import { unsafePath } from './command.js';

export interface IngestReport {
  seen: number;
  created: number;
  already: number;
  /** Files still being written (size changed within quiet_s and no .closed marker). */
  open: number;
  /** Names that do not match the pattern or are unsafe, with why. */
  rejected: Array<{ file: string; reason: string }>;
}

export interface IngestOptions {
  db: Database;
  docType: string;
  ingest: IngestConfig;
  site: string;
  now?: () => Date;
  /** Called every few files with the counts so far, for progress on large directories. */
  progress?: (report: IngestReport, total: number) => void;
  signal?: AbortSignal;
}

const MARKER = '.closed';
const BATCH = 200;

export function documentId(runName: string, fileNumber: number): string {
  return `run_${runName}_${String(fileNumber).padStart(3, '0')}`;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).sort();
}

/**
 * Catalogues closed DAQ files: one `closed` document per file, idempotent (existing ids are
 * left alone). A file is closed when it has not changed for quiet_s, or a `<name>.closed`
 * marker exists. Names that do not match the pattern are reported, never guessed.
 */
export async function ingestDirectory(dir: string, options: IngestOptions): Promise<IngestReport> {
  const now = options.now ?? (() => new Date());
  const pattern = new RegExp(options.ingest.pattern);
  const files = await listFiles(resolve(dir));
  const names = new Set(files);
  const report: IngestReport = { seen: 0, created: 0, already: 0, open: 0, rejected: [] };
  const candidates: Array<{ path: string; id: string; runName: string; fileNumber: number; size: number }> = [];

  for (const path of files) {
    if (path.endsWith(MARKER)) continue;
    report.seen++;
    const name = basename(path);
    const match = pattern.exec(name);
    const runName = match?.groups?.run_name;
    const fileNumber = Number(match?.groups?.file_number);
    if (!match || !runName || !Number.isInteger(fileNumber)) {
      report.rejected.push({ file: path, reason: `name does not match ingest.pattern ${options.ingest.pattern}` });
      continue;
    }
    const unsafe = unsafePath(path);
    if (unsafe) {
      report.rejected.push({ file: path, reason: `path ${unsafe}` });
      continue;
    }
    const info = await stat(path);
    const quiet = now().getTime() - info.mtimeMs >= options.ingest.quiet_s * 1000;
    if (!quiet && !names.has(`${path}${MARKER}`)) {
      report.open++;
      continue;
    }
    candidates.push({ path, id: documentId(runName, fileNumber), runName, fileNumber, size: info.size });
  }

  for (let i = 0; i < candidates.length && !options.signal?.aborted; i += BATCH) {
    const batch = candidates.slice(i, i + BATCH);
    const existing = await options.db.allDocs({}, batch.map((c) => c.id));
    const present = new Set(existing.rows.filter((r) => !r.error && r.value).map((r) => r.key as string));
    const docs: DaqDocument[] = [];
    for (const c of batch) {
      if (present.has(c.id)) {
        report.already++;
        continue;
      }
      const closedAt = now().toISOString();
      docs.push({
        _id: c.id,
        type: options.docType,
        run_name: c.runName,
        file_number: c.fileNumber,
        file: c.path,
        // Which DAQ machine catalogued the file: the status page groups runs by it.
        daq_host: hostname(),
        size_in_bytes: c.size,
        checksum: { sha256: await sha256File(c.path, options.signal) },
        date_closed: closedAt,
        status: 'closed',
        history: [{ at: closedAt, from: null, to: 'closed', by: `${options.site}/ingest`, user: options.db.user }],
      });
    }
    if (docs.length > 0) {
      const results = await options.db.bulk(docs);
      for (const r of results) {
        if (!r.error) report.created++;
        else if (r.error === 'conflict') report.already++;
        else report.rejected.push({ file: docs.find((d) => d._id === r.id)?.file ?? r.id, reason: `${r.error}: ${r.reason}` });
      }
    }
    options.progress?.(report, candidates.length);
  }
  return report;
}
