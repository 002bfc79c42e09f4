/**
 * Custody: the verified copies of a raw file, and whether the DAQ may delete it. A custody
 * record says that the site holding a copy re-read it (size and sha256) at `verified_at`,
 * written by that site's own agent account (the server checks: core/custody-rules.ts). A copy
 * counts for `mesh purge` only when its sha256 and size equal the catalogued ones; a record
 * that disagrees is kept (it says where a bad copy is) and blocks deletion.
 *
 * A run document (`runinfo_<run_name>`, the run-scope steps' document) may hold custody records
 * of an archive of the whole run, with `members: [{ doc_id, sha256 }]`: such a record counts as
 * a copy of each listed member whose sha256 equals that file's catalogued checksum.
 *
 * Pure functions: the disk is read by agents/purge.ts, the documents by store/custody.ts.
 */
import type { DaqDocument } from './document.js';

/** Agreeing copies `mesh purge` asks for unless told (`--copies`), and the disk-fill alert's estimate assumes. */
export const DEFAULT_COPIES = 1;

export interface CustodyRecord {
  /** The site holding the copy, whose agent re-read it. */
  site: string;
  /** The custody step that made the copy. */
  step: string;
  /** The copy's path at `site`. */
  file: string;
  /** What the re-read found: equal to the catalogued checksum for a good copy. */
  sha256: string;
  size_in_bytes: number;
  verified_at: string;
  /** The account that wrote the record (CouchDB's `userCtx.name`; null without accounts). */
  account: string | null;
  /** In a run document's record: the members the archive holds, with their sha256 as read there. */
  members?: Array<{ doc_id: string; sha256: string }>;
}

export interface PurgedRecord {
  at: string;
  /** `site/agent` as in history entries. */
  by: string;
  user: string | null;
  site: string;
  /** The path deleted from the DAQ buffer. */
  file: string;
  /** The custody records the deletion relied on. */
  custody: CustodyRecord[];
}

/** The run document of a run (shared-shapes: `runinfo_<run_name>`). */
export function runDocumentId(runName: string): string {
  return `runinfo_${runName}`;
}

export function custodyOf(doc: object): CustodyRecord[] {
  const list = (doc as { custody?: unknown }).custody;
  return Array.isArray(list) ? (list.filter((r) => r !== null && typeof r === 'object') as CustodyRecord[]) : [];
}

/** The purge record of a document, when the DAQ deleted its file. */
export function purgedOf(doc: object): PurgedRecord | undefined {
  const purged = (doc as { purged?: unknown }).purged;
  return purged !== null && typeof purged === 'object' ? (purged as PurgedRecord) : undefined;
}

/** Whether `site` already recorded custody of `step` for this document (whatever it found). */
export function hasCustody(doc: object, site: string, step: string): boolean {
  return custodyOf(doc).some((r) => r.site === site && r.step === step);
}

/**
 * The custody records that speak for `doc`: its own, and those of its run document's archives
 * that list it (as a record of the archive's sha256 for this member; size is the file's own,
 * since the archive does not hold it separately).
 */
export function recordsFor(doc: DaqDocument, run?: object): CustodyRecord[] {
  const own = custodyOf(doc);
  if (!run) return own;
  const fromRun = custodyOf(run).flatMap((r) => {
    const member = Array.isArray(r.members) ? r.members.find((m) => m && m.doc_id === doc._id) : undefined;
    return member ? [{ ...r, sha256: member.sha256, size_in_bytes: doc.size_in_bytes, members: undefined }] : [];
  });
  return [...own, ...fromRun];
}

export type HoldReason =
  | 'no catalogued checksum'
  | 'too recent'
  | 'a copy disagrees'
  | 'too few copies'
  | 'changed on disk'
  | 'missing on disk'
  | 'not a regular file'
  | 'unreadable'
  | 'document changed';

export type CustodyVerdict =
  /** Enough agreeing copies: the file may go once the disk still shows the catalogued file. */
  { kind: 'purge'; relied: CustodyRecord[] } | { kind: 'hold'; reason: HoldReason; detail: string };

export interface PurgeRule {
  /** Agreeing copies needed, each at a distinct site other than the DAQ's. */
  copies: number;
  /** The DAQ (ingest) site: its own records never count. */
  daqSite: string;
  /** Files closed after this moment are kept. */
  closedBefore: Date;
}

/** What the documents alone say of deleting `doc`'s raw file (the disk is checked after). */
export function custodyVerdict(doc: DaqDocument, run: object | undefined, rule: PurgeRule): CustodyVerdict {
  const sha256 = doc.checksum?.sha256;
  if (typeof sha256 !== 'string' || sha256.length === 0)
    return { kind: 'hold', reason: 'no catalogued checksum', detail: 'the document has no checksum.sha256' };
  const closed = Date.parse(doc.date_closed);
  if (!(closed <= rule.closedBefore.getTime())) return { kind: 'hold', reason: 'too recent', detail: `closed ${doc.date_closed}` };
  const records = recordsFor(doc, run).filter((r) => r.site !== rule.daqSite);
  const disagreeing = records.filter((r) => r.sha256 !== sha256 || r.size_in_bytes !== doc.size_in_bytes);
  if (disagreeing.length > 0)
    return {
      kind: 'hold',
      reason: 'a copy disagrees',
      detail: disagreeing.map((r) => `${r.site} ${r.step} ${r.file}: sha256 ${String(r.sha256).slice(0, 12)}…, ${r.size_in_bytes} bytes`).join('; '),
    };
  const bySite = new Map<string, CustodyRecord>();
  for (const r of records) if (!bySite.has(r.site)) bySite.set(r.site, r);
  if (bySite.size < rule.copies)
    return {
      kind: 'hold',
      reason: 'too few copies',
      detail: `${bySite.size} of ${rule.copies}${bySite.size > 0 ? ` (${[...bySite.keys()].join(', ')})` : ''}`,
    };
  return { kind: 'purge', relied: [...bySite.values()] };
}

/**
 * What the merge of a replication conflict (coordinator/audit.ts) keeps of custody: the winner's
 * records, then each (site, step) record that only a losing leaf has, and a purge that any leaf
 * recorded (the winner's first): a deleted file must never lose the record of its deletion.
 * Pure; depends on the leaves and their order only.
 */
export function mergedCustody(winner: object, losers: readonly object[]): { custody?: CustodyRecord[]; purged?: PurgedRecord } {
  const custody = [...custodyOf(winner)];
  const seen = new Set(custody.map((r) => `${r.site}\u0000${r.step}`));
  let purged = purgedOf(winner);
  for (const loser of losers) {
    for (const record of custodyOf(loser)) {
      const key = `${record.site}\u0000${record.step}`;
      if (seen.has(key)) continue;
      seen.add(key);
      custody.push(record);
    }
    purged ??= purgedOf(loser);
  }
  return { ...(custody.length > 0 ? { custody } : {}), ...(purged ? { purged } : {}) };
}
