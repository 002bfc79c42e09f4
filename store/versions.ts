/**
 * The done records by step version (couchapp/mesh-views.ts BY_VERSION): counts and input bytes
 * per version, optionally per run, from grouped reduces (no scan of the documents), and the
 * documents of one version a page at a time, for `mesh reprocess` and `mesh status`.
 */
import { BY_VERSION } from '../couchapp/mesh-views.js';
import type { Database } from './database.js';
import { countOf } from './files.js';

/** An inclusive range of run names, in the server's collation (`--runs A..B`; `--run R` is R..R). */
export interface RunRange {
  from: string;
  to: string;
}

export interface VersionCount {
  step: string;
  /** null: records that name no version. */
  version: string | null;
  documents: number;
  /** Bytes of the step's inputs (BY_VERSION's value). */
  bytes: number;
}

interface Stats {
  sum: number;
  count: number;
}

function versionCount(step: string, version: string | null, value: unknown): VersionCount {
  const stats = (value ?? {}) as Partial<Stats>;
  return { step, version, documents: countOf(stats.count), bytes: countOf(stats.sum) };
}

/** Done records of every step per version: one grouped reduce (rows: steps × versions). */
export async function doneByStepVersion(db: Database): Promise<VersionCount[]> {
  const rows = await db.reduced<Stats>(BY_VERSION, { group_level: 2 });
  return rows.map((r) => {
    const [step, version] = r.key as [string, string | null];
    return versionCount(step, version, r.value);
  });
}

/** Done records of `step` per version, of the runs in `runs` when given: one reduce, plus one per version with a run range. */
export async function doneByVersion(db: Database, step: string, runs?: RunRange): Promise<VersionCount[]> {
  const rows = await db.reduced<Stats>(BY_VERSION, { group_level: 2, startkey: [step], endkey: [step, {}] });
  const versions = rows.map((r) => versionCount(step, (r.key as [string, string | null])[1], r.value));
  if (!runs) return versions;
  const ranged: VersionCount[] = [];
  for (const { version } of versions) {
    const [row] = await db.reduced<Stats>(BY_VERSION, { startkey: [step, version, runs.from], endkey: [step, version, runs.to] });
    const count = versionCount(step, version, row?.value);
    if (count.documents > 0) ranged.push(count);
  }
  return ranged;
}

export interface VersionedDoc {
  doc: string;
  run: string | null;
  bytes: number;
}

/**
 * Up to `limit` documents whose `step` record is of `version` (and of the runs given), in key
 * order (then by id), the first `skip` left out. No `startkey_docid` paging: the embedded
 * server (PouchDB) ignores it; a reprocess takes its documents out of the range, so the next
 * page starts after the ones it left behind.
 */
export async function docsAtVersion(
  db: Database,
  step: string,
  version: string | null,
  options: { runs?: RunRange; limit: number; skip?: number },
): Promise<VersionedDoc[]> {
  const range = options.runs
    ? { startkey: [step, version, options.runs.from], endkey: [step, version, options.runs.to] }
    : { startkey: [step, version], endkey: [step, version, {}] };
  const rows = await db.rows(BY_VERSION, { ...range, limit: options.limit, ...(options.skip ? { skip: options.skip } : {}) });
  return rows.map((r) => ({ doc: r.id, run: r.key[2], bytes: countOf(r.value) }));
}
