/**
 * The audit's documents: `mesh:audit:<site>`, the running count of double claims found and
 * resolved on a server, and the reads and writes of a conflicted document's leaves.
 */
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import type { Database } from './database.js';
import * as files from './files.js';
import { update, writtenOrThrow } from './update.js';

const PAGE = 200;
/** Conflicted documents looked at per round: the rest waits for the next one. */
const MAX_PER_ROUND = 2000;
/** Resolutions kept in the audit document. */
const RECENT = 50;

export const AUDIT_TYPE = 'mesh-audit';
export const auditDocId = (site: string): string => `mesh:audit:${site}`;

export interface AuditDocument {
  _id: string;
  _rev?: string;
  type: typeof AUDIT_TYPE;
  site: string;
  detected: number;
  resolved: number;
  updated: string;
  /** The latest resolutions, newest last. */
  recent: Array<{ doc: string; kept: string; dropped: string[]; duplicates: number; at: string }>;
}

/** Every live leaf of a document (`open_revs=all`, deleted leaves left out). */
export async function liveLeaves(db: Database, id: string): Promise<DaqDocument[]> {
  const answer = await db.get<Array<{ ok?: DaqDocument; missing?: string }>>(id, { open_revs: 'all' });
  return (answer ?? []).flatMap((entry) => (entry.ok && entry.ok._deleted !== true ? [entry.ok] : []));
}

export async function deleteLeaves(db: Database, id: string, leaves: readonly DaqDocument[]): Promise<void> {
  if (leaves.length === 0) return;
  const rows = await db.bulk(leaves.map((l) => ({ _id: id, _rev: l._rev, _deleted: true })));
  const failed = rows.filter((r) => r.error && r.error !== 'conflict' && r.error !== 'not_found');
  if (failed.length > 0)
    throw new MeshError('SERVER_ERROR', `${id}: deleting losing revisions: ${failed.map((r) => `${r.error} ${r.reason ?? ''}`).join('; ')}`);
}

/** The ids of conflicted documents, at most MAX_PER_ROUND. */
export async function conflictedIds(db: Database): Promise<string[]> {
  const ids: string[] = [];
  while (ids.length < MAX_PER_ROUND) {
    const page = await files.conflicted(db, PAGE, ids.at(-1));
    ids.push(...page);
    if (page.length < PAGE) break;
  }
  return ids;
}

/** Adds this run's counts to `mesh:audit:<site>`; writes only when something was found, or to create it. */
export async function recordAudit(db: Database, site: string, found: number, resolutions: AuditDocument['recent'], now: Date): Promise<void> {
  const result = await update<AuditDocument>(
    db,
    auditDocId(site),
    (current) =>
      current && found === 0 && resolutions.length === 0
        ? { keep: true }
        : {
            write: {
              _id: auditDocId(site),
              type: AUDIT_TYPE,
              site,
              detected: (current?.detected ?? 0) + found,
              resolved: (current?.resolved ?? 0) + resolutions.length,
              updated: now.toISOString(),
              recent: [...(current?.recent ?? []), ...resolutions].slice(-RECENT),
            },
          },
    { create: true },
  );
  writtenOrThrow(result, auditDocId(site));
}
