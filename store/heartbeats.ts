/**
 * The agents' heartbeat documents (`mesh-agent:<site>:<agent>`): one per agent, rewritten by
 * that agent alone, each write a compare-and-set on the `_rev` it last wrote. Every write is a
 * validated write on the server (CouchDB calls its JavaScript process for it), so the agent
 * decides how seldom to call this (agents/heartbeat.ts).
 *
 * The `mesh agent --once` runs of a site on one host share one document (`<site>-<host>-once`,
 * see onceIdentity): each run rewrites it as that host's last run (`last_run`), so a site woken
 * every few seconds is one agent, not one more per run. Two runs may overlap (a trigger's run
 * and a cron's): the run that started last owns the document, an older run's writes give way.
 */
import { errorMessage } from '../core/errors.js';
import type { Database } from './database.js';
import { update } from './update.js';

export const AGENT_DOC_TYPE = 'mesh-agent';

/** Since the agent started: claims won, claims lost to another agent, retried attempts claimed, steps that ended ok / failed. */
export interface AgentActivity {
  claims: number;
  claim_conflicts: number;
  retries: number;
  steps_ok: number;
  steps_failed: number;
}

export interface AgentHeartbeat {
  _id: string;
  _rev?: string;
  type: typeof AGENT_DOC_TYPE;
  site: string;
  agent: string;
  host: string;
  pid: number;
  started: string;
  last_seen: string;
  state: string;
  running: Array<{ doc: string; step: string }>;
  /** What this agent did since it started (absent for agents that run no steps themselves). */
  counters?: AgentActivity;
  /** A `--once` identity: the run this document shows, the newest started on that host. */
  last_run?: OnceRun;
  /** The DAQ buffer's free space, measured by `mesh ingest` at the DAQ site (agents/daq-buffer.ts). */
  daq_buffer?: DaqBuffer;
}

export interface DaqBuffer {
  /** The directory catalogued (its file system's space). */
  dir: string;
  free_bytes: number;
  total_bytes: number;
  measured_at: string;
}

/** `ok`: the pass ended normally (failed steps are recorded in their documents); `failed`: it ended with an error. */
export type RunOutcome = 'ok' | 'failed';

export interface OnceRun {
  /** The run's own agent name, the one in the documents it claimed (unique per process). */
  agent: string;
  started: string;
  /** Set by the run's last heartbeat. */
  finished?: string;
  outcome?: RunOutcome;
}

export function heartbeatId(site: string, agent: string): string {
  return `mesh-agent:${site}:${agent}`;
}

/** The one heartbeat name of a site's `--once` runs on one host. */
export function onceIdentity(site: string, host: string): string {
  return `${site}-${host}-once`;
}

/** Whether `current` shows another `--once` run that started after `next`'s: then `next` gives way. */
export function newerRunHolds(current: AgentHeartbeat | undefined, next: AgentHeartbeat): boolean {
  const mine = next.last_run;
  const theirs = current?.last_run;
  return Boolean(mine && theirs && theirs.agent !== mine.agent && theirs.started > mine.started);
}

/** Every agent's heartbeat stored on this server (replicated: the agents of every site). */
export async function readHeartbeats(db: Database): Promise<AgentHeartbeat[]> {
  const { rows } = await db.allDocs<AgentHeartbeat>({ startkey: 'mesh-agent:', endkey: 'mesh-agent:\ufff0', include_docs: true });
  return rows.flatMap((r) => (r.doc && typeof r.doc === 'object' ? [r.doc] : []));
}

export type HeartbeatWrite =
  | { written: true; rev: string }
  /** Not written, and nothing wrong: a newer `--once` run of the same identity owns the document. */
  | { written: false; superseded: true; rev: string | undefined }
  | { written: false; superseded?: undefined; rev: string | undefined; reason: string };

/** Re-reads after a 409 before giving up until the next beat (another process writes under the same name). */
const REREADS = 2;

/**
 * Writes `doc` on revision `rev` (store/update.ts, the one compare-and-set). On 409 (a previous
 * process of the same agent name, an overlapping `--once` run, or a replicated copy, wrote last)
 * reads the latest revision and decides again, at most REREADS times: the newest content wins,
 * except over a `--once` run that started later (`superseded`). Without `rev` (the first beat)
 * the latest revision is read first. Never throws: a heartbeat must not fail the agent's work.
 */
export async function writeHeartbeat(db: Database, doc: AgentHeartbeat, rev: string | undefined, signal?: AbortSignal): Promise<HeartbeatWrite> {
  try {
    let superseded = false;
    const decide = (current: AgentHeartbeat | undefined) => {
      superseded = newerRunHolds(current, doc);
      return superseded ? { keep: true as const } : { write: doc };
    };
    const result = await update<AgentHeartbeat>(db, doc._id, decide, {
      ...(rev ? { seen: { ...doc, _rev: rev } } : {}),
      create: true,
      rereads: REREADS,
      ...(signal ? { signal } : {}),
    });
    // Superseded: keep the revision this run wrote last, so that its next write is decided on the latest again.
    if (result.kind === 'written') return superseded ? { written: false, superseded: true, rev } : { written: true, rev: result.doc._rev as string };
    return { written: false, rev, reason: result.kind === 'conflict' ? result.error.message : result.kind };
  } catch (error) {
    return { written: false, rev, reason: errorMessage(error) };
  }
}
