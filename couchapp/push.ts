import { isDeepStrictEqual } from 'node:util';
import type { Database } from '../store/database.js';
import { MeshError, isMeshError } from '../core/errors.js';
import { designDocument } from './design.js';
import { type OriginalDesignInput, originalDesignDocument } from './original-design.js';

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
 * meanwhile) is retried once after fetching again.
 */
export async function pushDesign(db: Database, design: StoredDesign): Promise<PushResult> {
  const { _rev: _ignored, ...wanted } = design;
  for (let attempt = 1; ; attempt++) {
    const current = await db.get<{ _id: string; _rev: string }>(wanted._id);
    if (current && isDeepStrictEqual(content(current), content(wanted))) return { changed: false, rev: current._rev };
    try {
      const rev = await db.put(current ? { ...wanted, _rev: current._rev } : { ...wanted });
      return { changed: true, rev };
    } catch (error) {
      if (isMeshError(error, 'CONFLICT') && attempt < 2) continue;
      if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN')) {
        throw new MeshError(error.code, `${error.message}: writing design documents needs the server's admin credentials`, { cause: error });
      }
      throw error;
    }
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
