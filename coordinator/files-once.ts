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
import type { DatabaseStatus, StepCounts } from './status.js';

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

export interface FailedFile {
  doc: string;
  step: string;
  reason: string;
  exit_code: number | null;
  stderr_tail?: string;
  run_name?: string | null;
  file_number?: number | null;
  /** The servers that hold this step failed, the step's own server first. */
  servers: string[];
}

export type ClaimOnce = DatabaseStatus['in_flight'][number] & { servers: string[] };

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
function sourceOf(config: MeshConfig, step: string, readable: DatabaseStatus[]): DatabaseStatus | undefined {
  const owner = readable.find((d) => d.site === ownServer(config, step));
  if (owner) return owner;
  return readable.reduce<DatabaseStatus | undefined>(
    (best, d) => (!best || compare(progress(d.steps[step] ?? ZERO), progress(best.steps[step] ?? ZERO)) > 0 ? d : best),
    undefined,
  );
}

export function countFilesOnce(config: MeshConfig, databases: readonly DatabaseStatus[], conflicted: number): FileCounts {
  const readable = databases.filter((d) => d.reachable);
  const ingestServer = config.sites[config.ingest.site] ? serverOf(config, config.sites[config.ingest.site]).name : undefined;
  const counter =
    readable.find((d) => d.site === ingestServer) ??
    readable.reduce<DatabaseStatus | undefined>((best, d) => (!best || d.doc_count > best.doc_count ? d : best), undefined);
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

/** One row per failed file and step, with every server that holds it failed; the record shown is the step's own server's (`stepsFrom`). */
export function failedOnce(databases: readonly DatabaseStatus[], stepsFrom: Record<string, string | null>): FailedFile[] {
  const rows = new Map<string, FailedFile>();
  for (const db of databases) {
    for (const f of db.failed) {
      const key = `${f.doc}\u0000${f.step}`;
      const known = rows.get(key);
      if (!known) {
        rows.set(key, { ...f, servers: [db.site] });
        continue;
      }
      known.servers.push(db.site);
      // The step's own server's record is the newest word on it.
      if (stepsFrom[f.step] === db.site) rows.set(key, { ...f, servers: [db.site, ...known.servers.filter((s) => s !== db.site)] });
    }
  }
  return [...rows.values()].sort((a, b) => (a.doc === b.doc ? a.step.localeCompare(b.step) : a.doc < b.doc ? -1 : 1));
}

/** One row per claim (file and step), the newest lease of the copies, with the servers that hold it. */
export function claimsOnce(databases: readonly DatabaseStatus[]): ClaimOnce[] {
  const rows = new Map<string, ClaimOnce>();
  for (const db of databases) {
    for (const c of db.in_flight) {
      const key = `${c.doc}\u0000${c.step}`;
      const known = rows.get(key);
      if (!known) rows.set(key, { ...c, servers: [db.site] });
      else if ((c.lease_until ?? '') > (known.lease_until ?? '')) rows.set(key, { ...c, servers: [...known.servers, db.site] });
      else known.servers.push(db.site);
    }
  }
  return [...rows.values()];
}
