/**
 * Custody and purge in the database: the documents whose copy a site must still verify, the
 * files a purge looks at, the bytes it could free, and the two compare-and-set writes (a custody
 * record appended, a purge recorded). Views from couchapp/mesh-views.ts.
 */
import { CUSTODY_COPIES, CUSTODY_DUE, type CopiesKey } from '../couchapp/mesh-views.js';
import { type CustodyRecord, type PurgedRecord, hasCustody, purgedOf } from '../core/custody.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import type { Database } from './database.js';
import { countOf } from './files.js';
import { type UpdateResult, update } from './update.js';

function documentsOf(rows: Array<{ doc?: unknown }>): DaqDocument[] {
  return rows.flatMap((row) =>
    row.doc && typeof row.doc === 'object' && typeof (row.doc as { _id?: unknown })._id === 'string' ? [row.doc as DaqDocument] : [],
  );
}

/** Documents whose `step` copy `site` holds and has not verified yet, with the step. */
export async function custodyDue(db: Database, site: string, limit: number): Promise<Array<{ doc: DaqDocument; step: string }>> {
  const rows = await db.rows(CUSTODY_DUE, { startkey: [site], endkey: [site, {}], include_docs: true, limit });
  return rows.flatMap((row) => documentsOf([row]).map((doc) => ({ doc, step: row.key[1] })));
}

/**
 * One page of catalogued files, kept (`state: 'kept'`) or recorded as deleted, in key order
 * after `after` (the last key of the previous page and its document id).
 */
export async function filesByCustody(
  db: Database,
  state: 'kept' | 'purged',
  limit: number,
  after?: { key: CopiesKey; id: string },
): Promise<{ docs: DaqDocument[]; last?: { key: CopiesKey; id: string } }> {
  const range = after ? { startkey: after.key, startkey_docid: after.id, skip: 1 } : { startkey: [state] };
  const rows = await db.rows(CUSTODY_COPIES, { ...range, endkey: [state, {}], include_docs: true, limit });
  const end = rows[rows.length - 1];
  return { docs: documentsOf(rows), ...(end ? { last: { key: end.key, id: end.id } } : {}) };
}

interface Stats {
  count: number;
  sum: number;
}

/** Bytes of the files not deleted yet with at least `copies` agreeing copies (their own records): a reduce, no file is read. */
export async function purgeableBytes(db: Database, copies: number): Promise<number> {
  const rows = await db.reduced<Stats>(CUSTODY_COPIES, { startkey: ['kept', copies], endkey: ['kept', {}], group_level: 2 });
  return rows.reduce((sum, row) => sum + countOf(row.value?.sum), 0);
}

/** Files by whether the DAQ deleted them and by agreeing copies (-1: a copy disagrees), with their bytes: one grouped reduce. */
export interface CustodyTally {
  state: 'kept' | 'purged';
  copies: number;
  files: number;
  bytes: number;
}

export async function custodyTally(db: Database): Promise<CustodyTally[]> {
  const rows = await db.reduced<Stats>(CUSTODY_COPIES, { group_level: 2 });
  return rows.map((row) => {
    const [state, copies] = row.key as CopiesKey;
    return { state, copies, files: countOf(row.value?.count), bytes: countOf(row.value?.sum) };
  });
}

/** Reads one document (a run document, say) if it exists. */
export function readDocument<D>(db: Database, id: string): Promise<D | undefined> {
  return db.get<D>(id);
}

/** Appends `record` to `custody[]` unless its site already recorded that step (compare-and-set, re-read on 409). */
export function appendCustody(db: Database, doc: DaqDocument, record: CustodyRecord, signal?: AbortSignal): Promise<UpdateResult<DaqDocument>> {
  return update<DaqDocument>(
    db,
    doc._id,
    (current) => {
      if (!current) return { keep: true };
      if (hasCustody(current, record.site, record.step)) return { keep: true };
      return { write: { ...current, custody: [...(Array.isArray(current.custody) ? current.custody : []), record] } };
    },
    { seen: doc, ...(signal ? { signal } : {}) },
  );
}

/**
 * Records the purge of `doc`'s file, decided on the revision `seen` and nothing else: no
 * re-read after a 409 (the document changed, its custody may have too: the caller decides
 * again on the new revision). Already purged: kept as it is.
 */
export function recordPurge(db: Database, seen: DaqDocument, purged: PurgedRecord): Promise<UpdateResult<DaqDocument>> {
  return update<DaqDocument>(
    db,
    seen._id,
    (current) => {
      if (!current) return { illegal: new MeshError('NOT_FOUND', `${seen._id} disappeared`) };
      if (purgedOf(current)) return { keep: true };
      return { write: { ...current, purged } };
    },
    { seen, rereads: 0 },
  );
}
