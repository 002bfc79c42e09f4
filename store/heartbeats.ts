/**
 * The agents' heartbeat documents (`mesh-agent:<site>:<agent>`): one per agent, rewritten by
 * that agent alone, each write a compare-and-set on the `_rev` it last wrote. Every write is a
 * validated write on the server (CouchDB calls its JavaScript process for it), so the agent
 * decides how seldom to call this (agents/heartbeat.ts).
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
}

export function heartbeatId(site: string, agent: string): string {
  return `mesh-agent:${site}:${agent}`;
}

/** Every agent's heartbeat stored on this server (replicated: the agents of every site). */
export async function readHeartbeats(db: Database): Promise<AgentHeartbeat[]> {
  const { rows } = await db.allDocs<AgentHeartbeat>({ startkey: 'mesh-agent:', endkey: 'mesh-agent:\ufff0', include_docs: true });
  return rows.flatMap((r) => (r.doc && typeof r.doc === 'object' ? [r.doc] : []));
}

export type HeartbeatWrite = { written: true; rev: string } | { written: false; rev: string | undefined; reason: string };

/** Re-reads after a 409 before giving up until the next beat (another process writes under the same name). */
const REREADS = 2;

/**
 * Writes `doc` on revision `rev` (store/update.ts, the one compare-and-set). On 409 (a previous
 * process of the same agent name, or a replicated copy, wrote last) reads the latest revision
 * and writes again, at most REREADS times: the document is this agent's alone, so the newest
 * content wins. Without `rev` (the first beat) the latest revision is read first.
 */
export async function writeHeartbeat(db: Database, doc: AgentHeartbeat, rev: string | undefined, signal?: AbortSignal): Promise<HeartbeatWrite> {
  try {
    const result = await update<AgentHeartbeat>(db, doc._id, () => ({ write: doc }), {
      ...(rev ? { seen: { ...doc, _rev: rev } } : {}),
      create: true,
      rereads: REREADS,
      ...(signal ? { signal } : {}),
    });
    if (result.kind === 'written') return { written: true, rev: result.doc._rev as string };
    return { written: false, rev, reason: result.kind === 'conflict' ? result.error.message : result.kind };
  } catch (error) {
    return { written: false, rev, reason: errorMessage(error) };
  }
}
