import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { helperEnvironment } from '../config/child-env.js';
import { METADATA_TIMEOUT_S } from '../config/schema.js';
import type { IngestConfig } from '../config/types.js';
import { sha256File } from '../core/checksum.js';
import type { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import { SAFE_NAME, unsafePath } from './command.js';
import { type MetadataOutcome, checkMetadataArgv, mergeMetadata, metadataArgv, runMetadataProgram } from './ingest-metadata.js';
import { type RunsReport, recordRuns } from './ingest-runs.js';
import { stepSupervisor } from './step-supervisor.js';

export interface IngestReport {
  seen: number;
  created: number;
  already: number;
  /** Files still being written (size changed within quiet_s and no .closed marker). */
  open: number;
  /** Names that do not match the pattern or are unsafe, with why. */
  rejected: Array<{ file: string; reason: string }>;
  /** Files not catalogued this scan (the metadata program failed), with why; the next scan tries again. */
  failed: Array<{ file: string; reason: string }>;
  /** With run steps: the run documents written, late members, runs closed (ingest-runs.ts). */
  runs?: RunsReport;
}

export interface IngestOptions {
  db: Database;
  docType: string;
  ingest: IngestConfig;
  /** The pipeline's step names: the metadata program may not set a field of that name. */
  stepNames: readonly string[];
  site: string;
  now?: () => Date;
  /** Called every few files with the counts so far, for progress on large directories. */
  progress?: (report: IngestReport, total: number) => void;
  signal?: AbortSignal;
  /** The run pipeline, when the config has run steps: the ingest then keeps the run documents. */
  runs?: { steps: readonly string[]; quiet_s: number };
}

const MARKER = '.closed';
const BATCH = 200;
/** Metadata programs running at once: the machine that catalogues may be the DAQ host itself. */
const METADATA_AT_ONCE = 2;

interface Candidate {
  path: string;
  id: string;
  runName: string;
  fileNumber: number;
  size: number;
}

export function documentId(runName: string, fileNumber: number): string {
  return `run_${runName}_${String(fileNumber).padStart(3, '0')}`;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))
    .sort();
}

/** `fn` over `items`, at most `limit` at a time, results in order. */
async function inParallel<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Catalogues closed DAQ files: one `closed` document per file, idempotent (existing ids are
 * left alone). A file is closed when it has not changed for quiet_s, or a `<name>.closed`
 * marker exists. Names that do not match the pattern are reported, never guessed. With
 * `ingest.metadata`, each new file's header fields are merged in (ingest-metadata.ts); a file
 * whose program fails is reported in `failed` and left for the next scan.
 */
export async function ingestDirectory(dir: string, options: IngestOptions): Promise<IngestReport> {
  const now = options.now ?? (() => new Date());
  const pattern = new RegExp(options.ingest.pattern);
  const files = await listFiles(resolve(dir));
  const names = new Set(files);
  const metadata = options.ingest.metadata;
  // Before anything is written: a bad argument vector, or no setpriv, fails every file alike.
  if (metadata) {
    checkMetadataArgv(metadata);
    stepSupervisor.start();
  }
  const env = helperEnvironment();
  const program = metadata ? programName(metadata) : '';
  const report: IngestReport = { seen: 0, created: 0, already: 0, open: 0, rejected: [], failed: [] };
  const candidates: Candidate[] = [];
  const openRuns = new Set<string>();

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
    // The steps refuse such a document (agents/command.ts); here it would be the program's argument.
    if (metadata && !SAFE_NAME.test(runName)) {
      report.rejected.push({
        file: path,
        reason: `run_name ${JSON.stringify(runName)} is not a plain name (letters, digits, _ . + -), so it is not given to ingest.metadata`,
      });
      continue;
    }
    const info = await stat(path);
    const quiet = now().getTime() - info.mtimeMs >= options.ingest.quiet_s * 1000;
    if (!quiet && !names.has(`${path}${MARKER}`)) {
      report.open++;
      openRuns.add(runName);
      continue;
    }
    candidates.push({ path, id: documentId(runName, fileNumber), runName, fileNumber, size: info.size });
  }

  for (let i = 0; i < candidates.length && !options.signal?.aborted; i += BATCH) {
    const batch = candidates.slice(i, i + BATCH);
    const existing = await options.db.allDocs(
      {},
      batch.map((c) => c.id),
    );
    const present = new Set(existing.rows.filter((r) => !r.error && r.value).map((r) => r.key as string));
    const fresh = batch.filter((c) => !present.has(c.id));
    report.already += batch.length - fresh.length;
    const headers = metadata ? await inParallel(fresh, METADATA_AT_ONCE, (c) => readHeader(metadata, c, env, options)) : [];
    const docs: DaqDocument[] = [];
    for (const [at, c] of fresh.entries()) {
      const header = headers[at];
      if (header && !header.ok) {
        report.failed.push({ file: c.path, reason: header.reason });
        continue;
      }
      const closedAt = now().toISOString();
      const doc: DaqDocument = {
        _id: c.id,
        type: options.docType,
        run_name: c.runName,
        file_number: c.fileNumber,
        file: c.path,
        // Which DAQ machine catalogued the file: the status page groups runs by it (the file's header may know better).
        daq_host: hostname(),
        size_in_bytes: c.size,
        // Computed once the header is accepted: a file refused at every scan is not read in full each time. The key keeps its place.
        checksum: undefined,
        date_closed: closedAt,
        status: 'closed',
        history: [{ at: closedAt, from: null, to: 'closed', by: `${options.site}/ingest`, user: options.db.user }],
      };
      const merged = header ? mergeMetadata(doc, header.stdout, options.stepNames) : { ok: true as const, doc };
      if (!merged.ok) {
        report.failed.push({ file: c.path, reason: `${program} ${merged.reason}` });
        continue;
      }
      merged.doc.checksum = { sha256: await sha256File(c.path, options.signal) };
      docs.push(merged.doc);
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
  if (options.runs && options.runs.steps.length > 0 && !options.signal?.aborted) {
    const top = resolve(dir);
    report.runs = await recordRuns(
      candidates.map((c) => ({ id: c.id, runName: c.runName })),
      {
        db: options.db,
        site: options.site,
        runSteps: options.runs.steps,
        quietS: options.runs.quiet_s,
        now,
        openRuns,
        hasMarker: (run) => names.has(join(top, `${run}${MARKER}`)),
      },
    );
  }
  return report;
}

function programName(argv: readonly string[]): string {
  return `metadata program ${JSON.stringify(argv[0])}`;
}

/** Runs ingest.metadata for one file; a failure's reason names the program. */
async function readHeader(argv: readonly string[], c: Candidate, env: Record<string, string>, options: IngestOptions): Promise<MetadataOutcome> {
  const outcome = await runMetadataProgram(metadataArgv(argv, c), {
    timeoutMs: (options.ingest.metadata_timeout_s ?? METADATA_TIMEOUT_S) * 1000,
    env,
    signal: options.signal,
  });
  return outcome.ok ? outcome : { ok: false, reason: `${programName(argv)} ${outcome.reason}` };
}
