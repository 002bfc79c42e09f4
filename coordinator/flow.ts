/**
 * How data flows through the chain, from two views of `_design/mesh` (never every document):
 * files completed per step and hour (a `_count` reduce of `flow`, grouped by hour), and the
 * latency per stage — DAQ close → proc0 done → proc1 done → … — over a window, from at most
 * `maxRows` newest rows of `flow` per step, against the config's targets.
 *
 * A target (`targets: { "proc1": "2h" }`) means: proc1 done within 2 h of the file's DAQ close.
 * A file is late for a step when it finished later than that within the window, or when it is
 * not done yet (any status but `bad`) and its DAQ close is already older than the target (the
 * `pending` view, keyed [step, date_closed], gives those as a key range).
 */
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import { errorMessage } from '../core/errors.js';
import { percentile } from './percentile.js';
import { type OpenDatabase, distinctServers } from './servers.js';
import type { MeshStatus } from './status.js';

export interface LateFile {
  doc: string;
  run: string;
  file: number;
  /** Seconds from DAQ close to the step's finish, or to now when not done. */
  latency_s: number;
  done: boolean;
  /** The file's DAQ close (`date_closed`). */
  closed: string;
}

export interface StageLatency {
  stage: string;
  /** What the stage latency is measured from: `closed` (DAQ close) for the first step, else the previous step's finish. */
  from: string;
  /** Stage latency (from `from` to this step's finish), over the files finished in the window. */
  p50_s: number | null;
  p95_s: number | null;
  /** Files that finished this step within the window (exact, from the reduce). */
  count: number;
  /** The target from DAQ close to this step's finish, in seconds; null when the config sets none. */
  target_s: number | null;
  /** Latency from DAQ close to this step's finish: what the target is compared with. */
  close_p50_s: number | null;
  close_p95_s: number | null;
  /** Step run time (`duration_s` of the records). */
  run_p50_s: number | null;
  run_p95_s: number | null;
  /** Rows the percentiles were computed from (the newest ones when capped). */
  sample: number;
  /** True when more files finished in the window than `row_cap`: percentiles and late-done files cover the newest `row_cap` only. */
  capped: boolean;
  /** Late files: finished late in the window (from the sample), plus not done and past the target (all of them, counted by the reduce). */
  late_count: number;
  /** Late files, at most `lateLimit`: not done yet (oldest DAQ close first), then done late (worst first). */
  late: LateFile[];
}

export interface FlowStatus {
  window_s: number;
  /** Rows of the `flow` view read per step at most. */
  row_cap: number;
  /** step → one entry per hour (UTC, `2026-11-27T05`) of the last `hours` hours, oldest first, zeros included. */
  completed: Record<string, Array<{ hour: string; count: number }>>;
  latency: StageLatency[];
}

export interface FlowOptions {
  now: Date;
  windowMs: number;
  /** Hours of the completed-files chart (0: none). */
  hours: number;
  /** Rows of `flow` read per step for the percentiles (default 2000). */
  maxRows?: number;
  /** Late files listed per step (default 50). */
  lateLimit?: number;
}

/** `2026-11-27T05`: the hour of an ISO date, as the `flow` view keys it. */
export function hourOf(date: Date): string {
  return date.toISOString().slice(0, 13);
}

/** The last `hours` hours, oldest first, the current hour last. */
export function lastHours(now: Date, hours: number): string[] {
  const top = Math.floor(now.getTime() / 3_600_000) * 3_600_000;
  return Array.from({ length: hours }, (_, i) => hourOf(new Date(top - (hours - 1 - i) * 3_600_000)));
}

function seconds(from: string | null | undefined, to: string | null | undefined): number | null {
  const s = (Date.parse(to ?? '') - Date.parse(from ?? '')) / 1000;
  return Number.isFinite(s) ? s : null;
}

async function completedPerHour(db: Database, step: string, now: Date, hours: number): Promise<Array<{ hour: string; count: number }>> {
  const slots = lastHours(now, hours);
  const counts = await files.donePerHour(db, step, slots);
  return slots.map((hour) => ({ hour, count: counts.get(hour) ?? 0 }));
}

async function stageLatency(config: MeshConfig, db: Database, index: number, options: Required<FlowOptions>): Promise<StageLatency> {
  const step = config.steps[index].name;
  const target = config.targets[step] ?? null;
  const now = options.now;
  const start = new Date(now.getTime() - options.windowMs);
  const closedBy = target === null ? null : new Date(now.getTime() - target * 1000).toISOString();
  const [newest, pendingRows] = await Promise.all([
    files.finishedBetween(db, step, start, now, options.maxRows),
    closedBy === null ? undefined : files.pendingClosedBy(db, step, closedBy, options.lateLimit),
  ]);
  // The reduces are asked only when a page was full: a reduce over a range costs a read of every
  // row in it on a server without stored reductions (the embedded one), and is rarely needed.
  const count = newest.length < options.maxRows ? newest.length : await files.finishedCount(db, step, start, now);
  const pendingLate =
    closedBy === null || !pendingRows ? 0 : pendingRows.length < options.lateLimit ? pendingRows.length : await files.pendingClosedByCount(db, step, closedBy);
  const stage: number[] = [];
  const sinceClose: number[] = [];
  const run: number[] = [];
  const lateDone: LateFile[] = [];
  for (const row of newest) {
    const finished = row.finished;
    const [from, closed, runName, fileNumber, duration] = row.value;
    const s = seconds(from, finished);
    const c = seconds(closed, finished);
    if (s !== null) stage.push(s);
    if (c !== null) sinceClose.push(c);
    if (typeof duration === 'number' && Number.isFinite(duration)) run.push(duration);
    if (target !== null && c !== null && c > target)
      lateDone.push({ doc: row.doc, run: runName ?? '', file: fileNumber ?? -1, latency_s: c, done: true, closed: closed ?? '' });
  }
  lateDone.sort((a, b) => b.latency_s - a.latency_s);
  const latePending: LateFile[] = (pendingRows ?? []).map((row) => ({
    doc: row.doc,
    run: row.run ?? '',
    file: row.file ?? -1,
    latency_s: seconds(row.closed, now.toISOString()) ?? 0,
    done: false,
    closed: row.closed,
  }));
  return {
    stage: step,
    from: index === 0 ? 'closed' : config.steps[index - 1].name,
    p50_s: percentile(stage, 50),
    p95_s: percentile(stage, 95),
    count,
    target_s: target,
    close_p50_s: percentile(sinceClose, 50),
    close_p95_s: percentile(sinceClose, 95),
    run_p50_s: percentile(run, 50),
    run_p95_s: percentile(run, 95),
    sample: newest.length,
    capped: count > newest.length,
    late_count: lateDone.length + pendingLate,
    late: [...latePending, ...lateDone].slice(0, options.lateLimit),
  };
}

/** The flow of one database: the chart's counts per hour and the latency of every stage. */
export async function flowStatus(config: MeshConfig, db: Database, options: FlowOptions): Promise<FlowStatus> {
  const full: Required<FlowOptions> = { maxRows: 2000, lateLimit: 50, ...options };
  if (!(full.windowMs > 0) || !Number.isInteger(full.hours) || full.hours < 0 || full.hours > 24 * 31) {
    throw new RangeError(`flowStatus: windowMs must be positive and hours an integer from 0 to ${24 * 31} (got ${full.windowMs}, ${full.hours})`);
  }
  const steps = config.steps.map((s) => s.name);
  const [charts, latency] = await Promise.all([
    Promise.all(steps.map((step) => completedPerHour(db, step, full.now, full.hours))),
    Promise.all(steps.map((_, index) => stageLatency(config, db, index, full))),
  ]);
  return {
    window_s: full.windowMs / 1000,
    row_cap: full.maxRows,
    completed: Object.fromEntries(steps.map((step, i) => [step, charts[i]])),
    latency,
  };
}

export interface ServerFlow {
  site: string;
  flow?: FlowStatus;
  /** Why there is no flow for this server (e.g. a design document older than the `flow` view: run `mesh couchapp push`). */
  error?: string;
}

/** The flow of every reachable server of `status` (replicas may lag each other), each named by its site. */
export async function serverFlows(config: MeshConfig, open: OpenDatabase, status: MeshStatus, options: FlowOptions): Promise<ServerFlow[]> {
  const servers = distinctServers(config).filter((site) => status.databases.some((d) => d.site === site.name && d.reachable));
  return Promise.all(
    servers.map((site) =>
      flowStatus(config, open(site), options).then(
        (flow) => ({ site: site.name, flow }),
        (error: unknown) => ({ site: site.name, error: errorMessage(error) }),
      ),
    ),
  );
}

/** The flows that could be read. */
export function flowsOf(flows: readonly ServerFlow[]): FlowStatus[] {
  return flows.flatMap((f) => (f.flow ? [f.flow] : []));
}
