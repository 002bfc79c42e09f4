/**
 * `mesh reprocess`: a step's new version re-made for chosen runs. The plan counts, from the
 * by-version view (no scan), the documents whose record of the step is older than the config's
 * version (none is oldest; natural order, core/versions.ts) and the bytes of their inputs; the
 * run makes the step ready again on each of them, one compare-and-set each (store/update.ts),
 * with the operator's `reprocess` event (core/state.ts): the old records go whole into
 * `superseded[]` and the agents re-run the step and the later ones as usual.
 */
import type { MeshConfig, StepConfig } from '../config/types.js';
import type { DaqDocument, StepRecord } from '../core/document.js';
import { isDone } from '../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import { transition } from '../core/state.js';
import { isOlder } from '../core/versions.js';
import type { Database } from '../store/database.js';
import { update } from '../store/update.js';
import { type RunRange, type VersionCount, type VersionedDoc, docsAtVersion, doneByStepVersion, doneByVersion } from '../store/versions.js';

export interface ReprocessSelection {
  step: string;
  runs?: RunRange;
  /** Only records of versions below this one (it restricts the config's version, never widens it). */
  belowVersion?: string;
}

export interface ReprocessPlan {
  step: StepConfig;
  /** The config's version of the step: what the re-made records will carry. */
  target: string;
  selection: ReprocessSelection;
  /** The older versions selected, with their documents and input bytes. */
  versions: VersionCount[];
  documents: number;
  bytes: number;
  /** The first documents of the selection, for the operator to look at. */
  sample: VersionedDoc[];
}

/** The step named, with a version to reprocess to; clear errors for anything else. */
function stepToReprocess(config: MeshConfig, name: string): StepConfig & { version: string } {
  const index = config.steps.findIndex((s) => s.name === name);
  if (index < 0) throw new MeshError('BAD_INPUT', `step ${JSON.stringify(name)} is not in the pipeline (${config.steps.map((s) => s.name).join(', ')})`);
  const step = config.steps[index];
  if (step.version === undefined)
    throw new MeshError(
      'BAD_INPUT',
      `step ${name} has no version in the config: set steps[${index}].version to the new program's version (in ${config.source}), then reprocess`,
    );
  return step as StepConfig & { version: string };
}

/** Whether a record of `version` is selected: older than the config's, and below `belowVersion` when given. */
export function selected(version: string | null, target: string, belowVersion?: string): boolean {
  return isOlder(version, target) && (belowVersion === undefined || isOlder(version, belowVersion));
}

/** Counts what a reprocess would touch: a grouped reduce per version, and a sample of `sampleSize` documents. */
export async function planReprocess(config: MeshConfig, db: Database, selection: ReprocessSelection, sampleSize = 10): Promise<ReprocessPlan> {
  const step = stepToReprocess(config, selection.step);
  const versions = (await doneByVersion(db, step.name, selection.runs)).filter((v) => selected(v.version, step.version, selection.belowVersion));
  const sample: VersionedDoc[] = [];
  for (const { version } of versions) {
    if (sample.length >= sampleSize) break;
    sample.push(...(await docsAtVersion(db, step.name, version, { runs: selection.runs, limit: sampleSize - sample.length })));
  }
  return {
    step,
    target: step.version,
    selection,
    versions,
    documents: versions.reduce((n, v) => n + v.documents, 0),
    bytes: versions.reduce((n, v) => n + v.bytes, 0),
    sample,
  };
}

export interface OlderRecords {
  /** The step's version in the config. */
  version: string;
  /** Done records older than it. */
  older: number;
}

/**
 * Per step with a version in the config, the done records older than it (what `mesh reprocess`
 * would count): one grouped reduce. Undefined when the view cannot be read (a design document
 * older than this one): the status goes on without it.
 */
export async function olderRecordCounts(config: MeshConfig, db: Database): Promise<Record<string, OlderRecords> | undefined> {
  const older: Record<string, OlderRecords> = {};
  for (const step of config.steps) if (step.version !== undefined) older[step.name] = { version: step.version, older: 0 };
  if (Object.keys(older).length === 0) return older;
  const rows = await doneByStepVersion(db).catch(() => undefined);
  if (!rows) return undefined;
  for (const row of rows) {
    const entry = Object.prototype.hasOwnProperty.call(older, row.step) ? older[row.step] : undefined;
    if (entry && isOlder(row.version, entry.version)) entry.older += row.documents;
  }
  return older;
}

export interface ReprocessProgress {
  done: number;
  total: number;
}

export interface ReprocessSummary {
  /** Documents whose step is ready again. */
  reprocessed: number;
  /** Already at the version (or no longer done) when read: nothing to do. */
  skipped: number;
  /** Refused by the state machine or the server (a step claimed meanwhile, a bad document…), with why. */
  refused: Array<{ doc: string; reason: string }>;
  /** Kept changing under the compare-and-set. */
  conflicts: string[];
  bytes: number;
}

/** Documents written at once: a few in flight hide the round trips without crowding the server. */
const IN_FLIGHT = 8;
const PAGE = 200;

/**
 * Makes the plan's step ready again on every selected document, re-reading each: a document
 * whose record is no longer older (or no longer done) is skipped, one claimed meanwhile is refused.
 */
export async function runReprocess(
  config: MeshConfig,
  db: Database,
  plan: ReprocessPlan,
  options: { why: string; by: string; now?: () => Date; onProgress?: (progress: ReprocessProgress) => void; signal?: AbortSignal; pageSize?: number },
): Promise<ReprocessSummary> {
  const pageSize = options.pageSize ?? PAGE;
  const summary: ReprocessSummary = { reprocessed: 0, skipped: 0, refused: [], conflicts: [], bytes: 0 };
  const name = plan.step.name;
  let done = 0;
  /** The compare-and-set of one document: the decision is made again on what is stored. */
  const write = (row: VersionedDoc) =>
    update<DaqDocument>(
      db,
      row.doc,
      (doc) => {
        const current = doc as DaqDocument;
        const record = isDone(current, name) ? (current[name] as StepRecord) : undefined;
        const version = typeof record?.version === 'string' ? record.version : null;
        if (!record || !selected(version, plan.target, plan.selection.belowVersion)) return { keep: true };
        const next = transition(
          current,
          { type: 'reprocess', step: name, by: options.by, why: options.why, user: db.user },
          options.now?.() ?? new Date(),
          config,
        );
        return next.ok ? { write: next.doc } : { illegal: next.error };
      },
      { signal: options.signal },
    );
  const one = async (row: VersionedDoc): Promise<void> => {
    const result = await write(row).catch((error: unknown) => {
      // The server's rules decide who may reprocess: every other document would get the same answer.
      if (isMeshError(error, 'FORBIDDEN'))
        throw new MeshError(
          'FORBIDDEN',
          `${row.doc}: the server refused the reprocess (${errorMessage(error)}); it takes an operator's account (role mesh-operator)`,
          {
            cause: error,
          },
        );
      throw error;
    });
    if (result.kind === 'written' && result.changed) {
      summary.reprocessed++;
      summary.bytes += row.bytes;
    } else if (result.kind === 'written' || result.kind === 'gone') summary.skipped++;
    else if (result.kind === 'illegal') summary.refused.push({ doc: row.doc, reason: result.error.message });
    else summary.conflicts.push(row.doc);
    options.onProgress?.({ done: ++done, total: plan.documents });
  };
  for (const { version } of plan.versions) {
    // Reprocessed documents leave the version's range; the refused and conflicting stay, and are skipped.
    const leftBehind = () => summary.refused.length + summary.conflicts.length;
    const skipBefore = leftBehind();
    // Each page takes at least one document out of the range or leaves it behind: bounded by the documents counted, plus what arrived since.
    for (let pages = 0; pages <= plan.documents + pageSize; pages++) {
      options.signal?.throwIfAborted();
      const page = await docsAtVersion(db, name, version, { runs: plan.selection.runs, limit: pageSize, skip: leftBehind() - skipBefore });
      if (page.length === 0) break;
      for (let i = 0; i < page.length; i += IN_FLIGHT) await Promise.all(page.slice(i, i + IN_FLIGHT).map(one));
    }
  }
  return summary;
}

/** `--runs A..B` or `--run R` as a range; a clear error for anything else. */
export function runRange(options: { runs?: string; run?: string }): RunRange | undefined {
  if (options.runs !== undefined && options.run !== undefined) throw new MeshError('BAD_INPUT', '--runs and --run cannot be given together');
  if (options.run !== undefined) {
    if (options.run.length === 0) throw new MeshError('BAD_INPUT', '--run is empty, expected a run name (e.g. lg23b002)');
    return { from: options.run, to: options.run };
  }
  if (options.runs === undefined) return undefined;
  // Run names may hold a single dot (core: letters, digits, _ . + -), never two in a row here.
  const parts = options.runs.split('..');
  if (parts.length !== 2 || parts[0].length === 0 || parts[1].length === 0)
    throw new MeshError('BAD_INPUT', `--runs is ${JSON.stringify(options.runs)}, expected FIRST..LAST (e.g. lg23b002..lg23b009), both included`);
  // In the server's collation (CouchDB's ICU, not JavaScript's): a reversed range selects nothing, and the count says so.
  return { from: parts[0], to: parts[1] };
}
