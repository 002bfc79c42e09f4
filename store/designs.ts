import { isDeepStrictEqual } from 'node:util';
import { update, writtenOrThrow } from './update.js';
import type { Database } from './database.js';
import { MeshError, isMeshError } from '../core/errors.js';
import { designDocument } from '../couchapp/design.js';
import { type OriginalDesignInput, originalDesignDocument } from '../couchapp/original-design.js';

export interface PushResult {
  /** Whether a new revision was written. */
  changed: boolean;
  /** The design document's current revision. */
  rev: string;
}

/** What pushDesign needs of a design document. */
export interface StoredDesign {
  _id: string;
  _rev?: string;
}

/** The content that matters for comparison: the document as JSON, without `_rev`. */
function content(doc: object): unknown {
  const { _rev: _ignored, ...rest } = JSON.parse(JSON.stringify(doc)) as Record<string, unknown>;
  return rest;
}

/**
 * Writes `design` unless the stored document already has the same content (ignoring `_rev`),
 * so an unchanged push adds no revision and rebuilds no view. A 409 (someone else wrote it
 * meanwhile) decides again on what they wrote (store/update.ts).
 */
export async function pushDesign(db: Database, design: StoredDesign): Promise<PushResult> {
  const { _rev: _ignored, ...wanted } = design;
  try {
    const result = await update<StoredDesign>(
      db,
      wanted._id,
      (current) => (current && isDeepStrictEqual(content(current), content(wanted)) ? { keep: true } : { write: { ...wanted } }),
      { create: true },
    );
    const doc = writtenOrThrow(result, wanted._id);
    return { changed: result.kind === 'written' && result.changed, rev: doc._rev as string };
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN')) {
      throw new MeshError(error.code, `${error.message}: writing design documents needs the server's admin credentials`, { cause: error });
    }
    throw error;
  }
}

/** `_design/mesh` and the original scripts' `_design/<original_design>`; throws CONFIG_INVALID before anything is written. */
export function designDocuments(config: OriginalDesignInput): StoredDesign[] {
  return [designDocument(config), originalDesignDocument(config)];
}

/** Pushes both design documents of a pipeline (see pushDesign), in turn. */
export async function pushDesigns(db: Database, config: OriginalDesignInput): Promise<Array<PushResult & { id: string }>> {
  const results: Array<PushResult & { id: string }> = [];
  for (const design of designDocuments(config)) results.push({ id: design._id, ...(await pushDesign(db, design)) });
  return results;
}

export type DesignState = 'current' | 'stale' | 'missing';

/** Whether the stored design document has the content of `design` (as pushDesign compares it), differs, or is absent. */
export async function designState(db: Database, design: StoredDesign): Promise<DesignState> {
  const stored = await db.get<StoredDesign>(design._id);
  if (!stored) return 'missing';
  return isDeepStrictEqual(content(stored), content(design)) ? 'current' : 'stale';
}
