/**
 * The run documents (core/run-document.ts) in `mesh status`, the page and `/metrics`, each run
 * counted once across servers like a file (files-once.ts): the numbers come from the server the
 * first run step's agents claim on, or, when it cannot be read, the readable copy with the most
 * runs done. Late members (files catalogued after their run's step started) are listed, never
 * hidden in a count.
 */
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { type RunRow, type RunState, runCounts, runRows } from '../store/runs.js';
import { serverOf } from './servers.js';

/** Runs read per server: a few hundred a year, so all of them in practice. */
const RUN_LIST_LIMIT = 2000;

export interface ServerRuns {
  site: string;
  counts: Record<RunState, number>;
  rows: RunRow[];
}

export interface RunsStatus {
  /** Runs per state: open (not closed yet), todo (closed, a run step to do), done, bad. */
  counts: Record<RunState, number>;
  /** The server the numbers come from; null when none could be read. */
  counts_from: string | null;
  /** The runs not done (open, to do, bad), with their status and member counts. */
  runs: Array<RunRow & { run_name: string }>;
  /** Runs with late members: files catalogued after the run's step started, not in its archive. */
  late: Array<{ run_name: string; late_members: number }>;
}

/** One server's run documents; undefined when the config has no run step (nothing to show). */
export async function readServerRuns(config: MeshConfig, site: string, db: Database): Promise<ServerRuns | undefined> {
  if ((config.run_steps ?? []).length === 0) return undefined;
  const [counts, rows] = await Promise.all([runCounts(db), runRows(db, RUN_LIST_LIMIT)]);
  return { site, counts, rows };
}

/** The mesh-wide view of the runs, each once. */
export function runsOnce(config: MeshConfig, servers: ReadonlyArray<ServerRuns | undefined>): RunsStatus | undefined {
  const readable = servers.filter((s): s is ServerRuns => s !== undefined);
  const first = (config.run_steps ?? [])[0];
  if (!first) return undefined;
  const ownSite = config.sites[first.site];
  const own = ownSite ? serverOf(config, ownSite).name : undefined;
  const source =
    readable.find((s) => s.site === own) ??
    readable.reduce<ServerRuns | undefined>((best, s) => (!best || s.counts.done > best.counts.done ? s : best), undefined);
  const rows = (source?.rows ?? []).filter((r): r is RunRow & { run_name: string } => r.run_name !== null);
  return {
    counts: source?.counts ?? { open: 0, todo: 0, done: 0, bad: 0 },
    counts_from: source?.site ?? null,
    runs: rows.filter((r) => r.state !== 'done'),
    late: rows.filter((r) => r.late_members > 0).map((r) => ({ run_name: r.run_name, late_members: r.late_members })),
  };
}

/** The lines of `mesh status` about runs. */
export function runsText(runs: RunsStatus): string[] {
  const c = runs.counts;
  const lines = [`runs (from ${runs.counts_from ?? 'no server'}): ${c.done} done, ${c.todo} to do, ${c.open} open, ${c.bad} bad`];
  for (const r of runs.runs) lines.push(`  ${r.run_name}: ${r.state === 'open' ? 'open' : r.status}, ${r.members} members`);
  for (const l of runs.late) lines.push(`  ${l.run_name}: ${l.late_members} late member(s), catalogued after its run step started: not in its archive`);
  return lines;
}
