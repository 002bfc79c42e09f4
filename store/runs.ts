/**
 * The run documents' queries (core/run-document.ts): what the run agents take their candidates
 * from, what `mesh status` and `/metrics` count, and the member documents an agent checks before
 * claiming. Keys come from couchapp/mesh-views.ts RUN_DOCS; callers never write a view name.
 */
import { RUN_DOCS, type RunDocValue } from '../couchapp/mesh-views.js';
import type { DaqDocument } from '../core/document.js';
import { type RunDocument, isRunDocument, runDocumentId } from '../core/run-document.js';
import type { Database } from './database.js';
import { countOf } from './files.js';

export type RunState = 'open' | 'todo' | 'done' | 'bad';

/** Closed runs with a run step not done (ready, claimed, failed), up to `limit`. */
export async function runsToDo(db: Database, limit: number): Promise<RunDocument[]> {
  const rows = await db.rows(RUN_DOCS, { startkey: ['todo'], endkey: ['todo', {}], include_docs: true, limit });
  return rows.flatMap((row) => (isRunDocument(row.doc) ? [row.doc] : []));
}

/** Run documents per state. */
export async function runCounts(db: Database): Promise<Record<RunState, number>> {
  const counts: Record<RunState, number> = { open: 0, todo: 0, done: 0, bad: 0 };
  for (const row of await db.reduced(RUN_DOCS, { group_level: 1 })) {
    const state = (row.key as [RunState])[0];
    if (state in counts) counts[state] = countOf(row.value);
  }
  return counts;
}

export interface RunRow extends RunDocValue {
  run_name: string | null;
  state: RunState;
}

/** Every run document's summary, by state then run name, up to `limit`. */
export async function runRows(db: Database, limit: number): Promise<RunRow[]> {
  return (await db.rows(RUN_DOCS, { limit })).map((row) => ({ ...row.value, state: row.key[0], run_name: row.key[1] }));
}

export async function readRun(db: Database, runName: string): Promise<RunDocument | undefined> {
  const doc = await db.get<RunDocument>(runDocumentId(runName));
  return isRunDocument(doc) ? doc : undefined;
}

/** The documents of `ids` that exist, by id (the members of a run, read before its step is claimed). */
export async function documentsById(db: Database, ids: readonly string[]): Promise<Map<string, DaqDocument>> {
  const found = new Map<string, DaqDocument>();
  for (let i = 0; i < ids.length; i += 500) {
    const answer = await db.allDocs<DaqDocument>({ include_docs: true }, ids.slice(i, i + 500) as string[]);
    for (const row of answer.rows) if (row.doc && typeof row.doc === 'object') found.set(row.key as string, row.doc);
  }
  return found;
}
