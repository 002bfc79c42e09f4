/**
 * Mesh-wide numbers that count every file once. The servers hold replicas of one database, so
 * adding their counts counts a file once per server (and halves the totals when one goes down).
 * Instead, a step's numbers come from one server: the one that step's agents claim on (it sees
 * the step's claims, results and ready work first), or, when it cannot be read, the reachable
 * copy furthest along. Every other server is compared with it, and one whose copy differs is
 * named with a lower bound of the files it is behind on ("kit is behind on 3 files"). Lists
 * (failed, in flight) have one row per file and step, with the servers that hold it so.
 */
import type { MeshConfig } from '../config/types.js';
import { serverOf } from './servers.js';

export interface StepCounts {
  done: number;
  ready: number;
  queued: number;
  in_progress: number;
  failed: number;
}

/** A step failed for good, as one server lists it. */
export interface FailedStep {
  doc: string;
  step: string;
  reason: string;
  exit_code: number | null;
  stderr_tail?: string;
  run_name?: string | null;
  file_number?: number | null;
}

/** A claim in flight, as one server lists it. */
export interface InFlightClaim {
  doc: string;
  step: string;
  agent: string;
  site: string;
  attempts: number;
  lease_until: string;
  lease_age_s: number;
  expired: boolean;
}

/** What is read here of one server's status (coordinator/status.ts's ServerCounts has it all). */
export interface ServerCounts {
  site: string;
  reachable: boolean;
  doc_count: number;
  steps: Record<string, StepCounts>;
  failed: readonly FailedStep[];
  in_flight: readonly InFlightClaim[];
}

export interface ServerDifference {
  server: string;
  /** `behind` the step's own server (or the ingest server, for files not there yet); `differs` from a stand-in read while the step's own server could not be. */
  direction: 'behind' | 'differs';
  /** At least this many files differ (a lower bound from the counts: the views give no ids). */
  files: number;
  /** The steps whose counts differ that way. */
  steps: string[];
  /** Files the server does not hold yet (fewer documents than the count). */
  missing: number;
  text: string;
}

export interface FileCounts {
  /** Distinct files: the ingest server's document count (documents are made there), else the largest count read. */
  count: number;
  count_from: string | null;
  /** Per step, the counts of one server (`steps_from`): each file once. */
  steps: Record<string, StepCounts>;
  /** The server each step's counts come from; null when no server could be read. */
  steps_from: Record<string, string | null>;
  /** Documents in conflict now, each once, however many servers hold the conflict. */
  conflicts: number;
  /** Servers whose copy differs from the one the numbers come from. */
  differences: ServerDifference[];
}

export type FailedFile = FailedStep & {
  /** The servers that hold this step failed, the step's own server first. */
  servers: string[];
};

export type ClaimOnce = InFlightClaim & { servers: string[] };

const ZERO: StepCounts = Object.freeze({ done: 0, ready: 0, queued: 0, in_progress: 0, failed: 0 });
/** What a step's own agents write: a copy elsewhere that differs in these is behind. `ready` follows the previous step's outcome. */
const OUTCOMES = ['done', 'failed', 'in_progress', 'queued'] as const;

/** How far along a copy of a step is: finished first, then claimed. */
function progress(c: StepCounts): [number, number, number] {
  return [c.done + c.failed, c.in_progress + c.queued, c.ready];
}

function compare(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The name of the server `step`'s agents claim on (its site's server). */
function ownServer(config: MeshConfig, step: string): string | undefined {
  const site = config.sites[config.steps.find((s) => s.name === step)?.site ?? ''];
  return site ? serverOf(config, site).name : undefined;
}

/** The server a step's numbers come from: its own server when readable, else the reachable copy furthest along. */
function sourceOf(config: MeshConfig, step: string, readable: ServerCounts[]): ServerCounts | undefined {
  const owner = readable.find((d) => d.site === ownServer(config, step));
  if (owner) return owner;
  return readable.reduce<ServerCounts | undefined>(
    (best, d) => (!best || compare(progress(d.steps[step] ?? ZERO), progress(best.steps[step] ?? ZERO)) > 0 ? d : best),
    undefined,
  );
}

export function countFilesOnce(config: MeshConfig, databases: readonly ServerCounts[], conflicted: number): FileCounts {
  const readable = databases.filter((d) => d.reachable);
  const ingestServer = config.sites[config.ingest.site] ? serverOf(config, config.sites[config.ingest.site]).name : undefined;
  const counter =
    readable.find((d) => d.site === ingestServer) ??
    readable.reduce<ServerCounts | undefined>((best, d) => (!best || d.doc_count > best.doc_count ? d : best), undefined);
  const count = counter?.doc_count ?? 0;
  const steps: Record<string, StepCounts> = {};
  const from: Record<string, string | null> = {};
  // Per server and direction: the steps and the largest number of files differing in one of them.
  const diffs = new Map<string, { server: string; direction: ServerDifference['direction']; files: number; steps: string[] }>();
  for (const { name } of config.steps) {
    const source = sourceOf(config, name, readable);
    steps[name] = { ...(source?.steps[name] ?? ZERO) };
    from[name] = source?.site ?? null;
    if (!source) continue;
    const reference = steps[name];
    for (const other of readable) {
      if (other === source) continue;
      const theirs = other.steps[name] ?? ZERO;
      let more = 0;
      let fewer = 0;
      for (const k of OUTCOMES) {
        more += Math.max(0, theirs[k] - reference[k]);
        fewer += Math.max(0, reference[k] - theirs[k]);
      }
      // Each file whose state differs moves one count from one bucket to another (or is absent): at least max(more, fewer) files.
      const files = Math.max(more, fewer);
      if (files === 0) continue;
      // The step's own server writes its outcomes first: another copy that differs has not caught up. Against a stand-in, say only that it differs.
      const direction = source.site === ownServer(config, name) ? 'behind' : 'differs';
      const key = `${other.site}\u0000${direction}`;
      const known = diffs.get(key) ?? { server: other.site, direction, files: 0, steps: [] };
      known.files = Math.max(known.files, files);
      known.steps.push(name);
      diffs.set(key, known);
    }
  }
  const differences: ServerDifference[] = [];
  for (const other of readable) {
    const missing = counter && other !== counter ? Math.max(0, count - other.doc_count) : 0;
    for (const direction of ['behind', 'differs'] as const) {
      const known = diffs.get(`${other.site}\u0000${direction}`);
      const lacking = direction === 'behind' ? missing : 0;
      if (!known && lacking === 0) continue;
      const files = Math.max(known?.files ?? 0, lacking);
      const detail = [...(known ? [`${known.steps.join(', ')}`] : []), ...(lacking > 0 ? [`${plural(lacking, 'file')} not there yet`] : [])].join('; ');
      const verb = direction === 'differs' ? 'differs' : `is ${direction}`;
      differences.push({
        server: other.site,
        direction,
        files,
        steps: known?.steps ?? [],
        missing: lacking,
        text: `${other.site} ${verb} on ${plural(files, 'file')} (${detail})`,
      });
    }
  }
  return { count, count_from: counter?.site ?? null, steps, steps_from: from, conflicts: conflicted, differences };
}

export interface ListOptions {
  /** The server each step's counts come from (`FileCounts.steps_from`). */
  stepsFrom: Record<string, string | null>;
  /** Where each server's list was cut: a full list proves nothing by what it lacks. */
  limit: number;
}

/**
 * One row per (doc, step) over every server's list, with the servers holding it; `better` says
 * whether a server's row replaces the one kept. A row that the step's own server, read and
 * listed in full, does not hold is one that server has moved past (a claim finished, a failure
 * retried): a lagging copy's, left out, so the list agrees with the counts.
 */
function onePerFile<R extends { doc: string; step: string }>(
  config: MeshConfig,
  databases: readonly ServerCounts[],
  rowsOf: (db: ServerCounts) => readonly R[],
  options: ListOptions,
  better: (row: R, kept: R, server: string) => boolean,
): Array<R & { servers: string[] }> {
  const rows = new Map<string, R & { servers: string[] }>();
  for (const db of databases) {
    for (const row of rowsOf(db)) {
      const key = `${row.doc}\u0000${row.step}`;
      const known = rows.get(key);
      if (!known) rows.set(key, { ...row, servers: [db.site] });
      else if (better(row, known, db.site)) rows.set(key, { ...row, servers: [db.site, ...known.servers] });
      else known.servers.push(db.site);
    }
  }
  return [...rows.values()].filter((row) => {
    const own = ownServer(config, row.step);
    if (own === undefined || options.stepsFrom[row.step] !== own || row.servers.includes(own)) return true;
    const source = databases.find((d) => d.site === own);
    return !source || rowsOf(source).length >= options.limit;
  });
}

/** One row per failed file and step, with every server that holds it failed; the record shown is the step's own server's. */
export function failedOnce(config: MeshConfig, databases: readonly ServerCounts[], options: ListOptions): FailedFile[] {
  return onePerFile(
    config,
    databases,
    (db) => db.failed,
    options,
    (row, _kept, server) => options.stepsFrom[row.step] === server,
  ).sort((a, b) => (a.doc === b.doc ? a.step.localeCompare(b.step) : a.doc < b.doc ? -1 : 1));
}

/** One row per claim (file and step), the newest lease of the copies, with the servers that hold it. */
export function claimsOnce(config: MeshConfig, databases: readonly ServerCounts[], options: ListOptions): ClaimOnce[] {
  return onePerFile(
    config,
    databases,
    (db) => db.in_flight,
    options,
    (row, kept) => (row.lease_until ?? '') > (kept.lease_until ?? ''),
  );
}
