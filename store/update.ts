/**
 * The one compare-and-set of the project: read (or take the revision the caller decided on),
 * decide the next document, write it with its `_rev`. Every outcome is named, so that a caller
 * never mistakes an illegal change for a lost race (the stuck-ready bug: a refused claim was
 * counted as a 409 and the document never ran nor failed).
 */
import { MeshError, isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

export interface StoredDocument {
  _id: string;
  _rev?: string;
}

/** What `decide` answers for the document as it is: the next version, nothing to do, or why the change is illegal. */
export type Decision<D> = { write: D } | { keep: true } | { illegal: MeshError };

export type UpdateResult<D> =
  /** Stored (`changed`), or already as wanted (`keep`, nothing written). */
  | { kind: 'written'; doc: D; changed: boolean }
  /** Someone else wrote first and the budget of re-reads is spent (none when deciding on a seen revision). */
  | { kind: 'conflict'; error: MeshError }
  /** `decide` refused the change on the latest revision it was given. */
  | { kind: 'illegal'; doc: D; error: MeshError }
  /** The document does not exist (or was deleted) and `decide` wanted an existing one. */
  | { kind: 'gone' };

/** Re-reads after a 409 before giving up: other writers (replication, an operator) rarely collide more often. */
export const CONFLICT_REREADS = 8;

export interface UpdateOptions<D> {
  /**
   * The revision the caller decided on: the first decision is made on it, without a read. With
   * `rereads: 0` this is a claim: a 409 means another writer won, and nothing is re-applied.
   */
  seen?: D;
  /** Reads of the latest revision after a 409 (default CONFLICT_REREADS). */
  rereads?: number;
  /** Whether `decide` is called with `undefined` for a missing document (to create it); otherwise the result is `gone`. */
  create?: boolean;
  signal?: AbortSignal;
}

/** Compare-and-set of one document; see UpdateResult for what comes back. Transport errors throw. */
export async function update<D extends StoredDocument>(
  db: Database,
  id: string,
  decide: (current: D | undefined) => Decision<D>,
  options: UpdateOptions<D> = {},
): Promise<UpdateResult<D>> {
  const rereads = options.rereads ?? CONFLICT_REREADS;
  let current: D | undefined = options.seen ?? (await db.get<D>(id, {}, { signal: options.signal }));
  for (let reread = 0; ; reread++) {
    if (!current && !options.create) return { kind: 'gone' };
    const decision = decide(current);
    if ('illegal' in decision) return { kind: 'illegal', doc: current as D, error: decision.illegal };
    if ('keep' in decision) return { kind: 'written', doc: current as D, changed: false };
    const next = { ...decision.write, _id: id, ...(current?._rev ? { _rev: current._rev } : {}) } as D;
    if (!current) delete next._rev;
    try {
      const rev = await db.put(next, options.signal ? { signal: options.signal } : {});
      return { kind: 'written', doc: { ...next, _rev: rev }, changed: true };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT')) throw error;
      if (reread >= rereads) return { kind: 'conflict', error };
      current = await db.get<D>(id, {}, { signal: options.signal });
    }
  }
}

/** The document an update wrote or kept; throws for the other outcomes (for callers that must not go on without it). */
export function writtenOrThrow<D>(result: UpdateResult<D>, id: string): D {
  switch (result.kind) {
    case 'written':
      return result.doc;
    case 'illegal':
    case 'conflict':
      throw result.error;
    case 'gone':
      throw new MeshError('NOT_FOUND', `${id} disappeared`);
  }
}
