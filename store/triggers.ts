/**
 * Trigger records (`mesh-trigger:<site>:<target>`): how the runs that the agents of `site`
 * start at `target` ended (agents/trigger.ts wakes a site that may not keep a process alive).
 * The triggering side is the one that sees a run's exit status and the last words of its output,
 * including when the run could not even write its own heartbeat; this document is how the
 * coordinator, `mesh status` and the page learn of it. One document per pair of sites, written
 * by the agents of `site` on their own server (the write rules admit it from them alone), each
 * write a compare-and-set; replication carries it to the other servers.
 */
import { TRIGGER_TYPE } from '../core/write-rules.js';
import type { Database } from './database.js';
import { type UpdateResult, update } from './update.js';

const PREFIX = `${TRIGGER_TYPE}:`;

/** How one triggered run ended. */
export interface RunOutcome {
  started: string;
  ended: string;
  ok: boolean;
  /** `exit 0`, `exit 1`, `signal SIGKILL`, `timed out`, `not started`. */
  how: string;
  /** Why it ended badly, in the run's own words when it printed any (its last error line). */
  reason?: string;
}

export interface TriggerRecord {
  _id: string;
  _rev?: string;
  type: typeof TRIGGER_TYPE;
  /** The triggering site: its agents write this document. */
  site: string;
  /** The site whose runs are started. */
  target: string;
  /** The agent that wrote last, and its host. */
  agent: string;
  host: string;
  /** When it was written last (the triggering agent's clock). */
  updated: string;
  /** Runs recorded, and how many of them ended badly (since the document was created). */
  runs: number;
  failures: number;
  /** The runs that ended badly in a row up to the last one; absent once a run went well. */
  failing?: { runs: number; since: string; reason: string };
  last: RunOutcome;
}

export function triggerRecordId(site: string, target: string): string {
  return `${PREFIX}${site}:${target}`;
}

function isTriggerRecord(doc: unknown): doc is TriggerRecord {
  if (doc === null || typeof doc !== 'object') return false;
  const r = doc as Record<string, unknown>;
  const last = r.last as Record<string, unknown> | undefined;
  return (
    r.type === TRIGGER_TYPE &&
    typeof r.site === 'string' &&
    typeof r.target === 'string' &&
    typeof r.updated === 'string' &&
    typeof last === 'object' &&
    last !== null &&
    typeof last.ok === 'boolean'
  );
}

/** Every trigger record a server holds (replicated: those of every triggering site); anything malformed is left out. */
export async function readTriggerRecords(db: Database): Promise<TriggerRecord[]> {
  const { rows } = await db.allDocs<unknown>({ startkey: PREFIX, endkey: `${PREFIX}\ufff0`, include_docs: true });
  return rows.flatMap((row) => (isTriggerRecord(row.doc) ? [row.doc] : []));
}

/**
 * Writes the record of (`site`, `target`) as `next` makes it from the stored one (undefined: none
 * yet); a 409 (another agent of the site wrote meanwhile) decides again on what it wrote.
 */
export function writeTriggerRecord(
  db: Database,
  site: string,
  target: string,
  next: (current: TriggerRecord | undefined) => TriggerRecord,
  signal?: AbortSignal,
): Promise<UpdateResult<TriggerRecord>> {
  return update<TriggerRecord>(db, triggerRecordId(site, target), (current) => ({ write: next(isTriggerRecord(current) ? current : undefined) }), {
    create: true,
    ...(signal ? { signal } : {}),
  });
}
