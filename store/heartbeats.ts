/**
 * The agents' heartbeat documents (`mesh-agent:<site>:<agent>`): one per agent, rewritten by
 * that agent alone, each write a compare-and-set on the `_rev` it last wrote. Every write is a
 * validated write on the server (CouchDB calls its JavaScript process for it), so the agent
 * decides how seldom to call this (agents/heartbeat.ts).
 */
import { errorMessage, isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

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

export type HeartbeatWrite = { written: true; rev: string } | { written: false; rev: string | undefined; reason: string };

/** Conflicts in a row before giving up until the next beat (another process writes under the same name). */
const CONFLICTS = 3;

/**
 * Writes `doc` on revision `rev`. On 409 (a previous process of the same agent name, or a
 * replicated copy, wrote last) reads the latest revision and tries again, at most
 * CONFLICTS times: the document is this agent's alone, so the newest content wins.
 */
export async function writeHeartbeat(db: Database, doc: AgentHeartbeat, rev: string | undefined, signal?: AbortSignal): Promise<HeartbeatWrite> {
  let current = rev;
  for (let attempt = 1; ; attempt++) {
    try {
      return { written: true, rev: await db.put({ ...doc, _rev: current }, { signal }) };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT') || attempt >= CONFLICTS) return { written: false, rev: current, reason: errorMessage(error) };
      current = (await db.get<AgentHeartbeat>(doc._id, {}, { signal }).catch(() => undefined))?._rev;
    }
  }
}
