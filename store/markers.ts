/**
 * Replication markers: one small control document per server, `mesh-marker:<site>`, rewritten
 * by the coordinator each round on that server only (one writer per document and server, so
 * no replication conflict), carried to the other servers by replication like any document.
 * Reading a server's copy of another server's marker tells how fresh that link is
 * (coordinator/freshness.ts). The generated validate_doc_update admits a `mesh-…` control
 * document from the coordinator's role (and a server admin) only.
 */
import { MeshError, isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

export const MARKER_TYPE = 'mesh-marker';
const PREFIX = 'mesh-marker:';

export interface Marker {
  _id: string;
  _rev?: string;
  type: typeof MARKER_TYPE;
  /** The site whose server this marker is written on. */
  site: string;
  /** Incremented by one at each write: equal numbers on two servers are the same marker. */
  n: number;
  /** When this marker was written, by the coordinator's clock (ISO 8601). */
  written: string;
  /** When marker 1 was written: a server holding no copy yet has been missing it since then. */
  since: string;
  /** The coordinator's round period when it wrote this marker (the next one is due that much later). */
  interval_s: number;
  /** Who wrote it, e.g. `coordinator/modane`. */
  by: string;
}

export function markerId(site: string): string {
  return PREFIX + site;
}

function isMarker(doc: unknown): doc is Marker {
  if (doc === null || typeof doc !== 'object') return false;
  const m = doc as Record<string, unknown>;
  return (
    m.type === MARKER_TYPE &&
    typeof m.site === 'string' &&
    typeof m.n === 'number' &&
    typeof m.written === 'string' &&
    Number.isFinite(Date.parse(m.written)) &&
    typeof m.since === 'string' &&
    typeof m.interval_s === 'number'
  );
}

/** Every marker a server holds, by the site that wrote it; anything malformed under the prefix is left out. */
export async function readMarkers(db: Database): Promise<Map<string, Marker>> {
  const { rows } = await db.allDocs<unknown>({ startkey: PREFIX, endkey: `${PREFIX}\ufff0`, include_docs: true });
  const markers = new Map<string, Marker>();
  for (const row of rows) if (isMarker(row.doc) && row.id === markerId(row.doc.site)) markers.set(row.doc.site, row.doc);
  return markers;
}

export type MarkerWrite = { result: 'written'; marker: Marker } | { result: 'conflict' };

/**
 * Writes the next marker of `site` on its own server: a compare-and-set on the stored `_rev`.
 * A 409 (another coordinator wrote in between) is read again, at most `attempts` times, then
 * reported as `conflict`: the marker on the server is fresh either way.
 */
export async function writeMarker(db: Database, site: string, options: { by: string; now: Date; intervalS: number; attempts?: number }): Promise<MarkerWrite> {
  const id = markerId(site);
  const attempts = options.attempts ?? 3;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const stored = await db.get<unknown>(id);
    const current = isMarker(stored) ? stored : undefined;
    const rev = (stored as { _rev?: string } | undefined)?._rev;
    if (stored && !current)
      throw new MeshError(
        'BAD_RESPONSE',
        `${id} on ${site}'s server is not a marker (type ${JSON.stringify((stored as { type?: unknown }).type)}); delete it so the coordinator can write its own`,
      );
    const written = options.now.toISOString();
    const marker: Marker = {
      _id: id,
      ...(rev ? { _rev: rev } : {}),
      type: MARKER_TYPE,
      site,
      n: (current?.n ?? 0) + 1,
      written,
      since: current?.since ?? written,
      interval_s: options.intervalS,
      by: options.by,
    };
    try {
      const newRev = await db.put({ ...marker });
      return { result: 'written', marker: { ...marker, _rev: newRev } };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT')) throw error;
    }
  }
  return { result: 'conflict' };
}
