/**
 * The scale benchmark's data set: an archive of processed documents (mostly `good` with every
 * record ok, some failed, some bad, some still in flight at another site) and a backlog of
 * `closed` documents ready for the first step. Written with `_bulk_docs` through the server's
 * validate_doc_update, so the write rate measured here is the raw write baseline.
 */
import type { Database } from '../store/database.js';
import { historyTo } from '../core/provenance.js';

const BATCH = 1000;
const PARALLEL = 2;
const T0 = Date.parse('2026-01-05T08:00:00.000Z');

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function okRecord(site: string, step: string, start: number, i: number): Record<string, unknown> {
  return {
    ok: true,
    site,
    agent: `${site}-agent-${i % 7}`,
    host: `${site}-node${i % 13}`,
    attempts: 1,
    started: iso(start),
    finished: iso(start + 4000),
    exit_code: 0,
    duration_s: 4,
    file: `/sps/edelweis/${step}/lg${Math.floor(i / 1000)}/${step}_${i}`,
    checksum: { sha256: (i * 2654435761).toString(16).padStart(16, '0').repeat(4).slice(0, 64) },
    stdout: `/logs/run/${i}/${step}.1.out`,
    stderr: `/logs/run/${i}/${step}.1.err`,
  };
}

/** Document `i` of the archive: what a year of processed runs looks like. */
export function archiveDoc(i: number): Record<string, unknown> {
  const run = `lg${String(Math.floor(i / 1000)).padStart(4, '0')}`;
  const closed = T0 + i * 60_000;
  const doc: Record<string, unknown> = {
    _id: `ar_${String(i).padStart(8, '0')}`,
    type: 'daqdocument',
    run_name: run,
    file_number: i % 1000,
    file: `/data/samba/${run}/${run}_${String(i % 1000).padStart(3, '0')}`,
    size_in_bytes: 104_857_600,
    checksum: { sha256: (i * 40503).toString(16).padStart(16, '0').repeat(4).slice(0, 64) },
    date_closed: iso(closed),
    status: 'good',
    proc0: okRecord('modane', 'proc0', closed + 1000, i),
    proc1: okRecord('lyon', 'proc1', closed + 9000, i),
    proc2: okRecord('lyon', 'proc2', closed + 17000, i),
    history: [
      { at: iso(closed), from: null, to: 'closed', by: 'modane/ingest' },
      { at: iso(closed + 1000), from: 'closed', to: 'proc0 in progress', by: 'modane/modane-agent' },
      { at: iso(closed + 5000), from: 'proc0 in progress', to: 'good', by: 'modane/modane-agent' },
      { at: iso(closed + 9000), from: 'good', to: 'proc1 in progress', by: 'lyon/lyon-agent' },
      { at: iso(closed + 13000), from: 'proc1 in progress', to: 'good', by: 'lyon/lyon-agent' },
      { at: iso(closed + 17000), from: 'good', to: 'proc2 in progress', by: 'lyon/lyon-agent' },
      { at: iso(closed + 21000), from: 'proc2 in progress', to: 'good', by: 'lyon/lyon-agent' },
    ],
  };
  if (i % 200 === 7) {
    doc.status = 'proc1 failed';
    delete doc.proc1;
    doc.pending = {
      proc1: {
        ok: false,
        site: 'lyon',
        agent: 'lyon-agent-1',
        attempts: 3,
        exit_code: 3,
        reason: 'exit status 3',
        stderr_tail: 'convert: bad header\n',
        started: iso(closed + 9000),
      },
    };
    delete doc.proc2;
  } else if (i % 500 === 11) {
    doc.status = 'bad';
    doc.reason = 'file truncated at the DAQ';
  } else if (i % 1000 === 13) {
    doc.status = 'proc2 in progress';
    delete doc.proc2;
    doc.pending = {
      proc2: { site: 'lyon', agent: 'lyon-agent-2', host: 'lyon-node1', attempts: 1, started: iso(closed + 17000), lease_until: '2099-01-01T00:00:00.000Z' },
    };
  }
  return doc;
}

/** A backlog document: closed at the DAQ, ready for proc0. */
export function backlogDoc(tag: string, i: number): Record<string, unknown> {
  const run = `bk${tag}`;
  return {
    _id: `bk${tag}_${String(i).padStart(8, '0')}`,
    type: 'daqdocument',
    run_name: run,
    file_number: i % 1000,
    file: `/data/samba/${run}/${run}_${String(i % 1000).padStart(3, '0')}`,
    size_in_bytes: 1024,
    date_closed: iso(T0),
    status: 'closed',
    history: historyTo('closed', []),
  };
}

/**
 * Writes `count` documents made by `make(i)` in batches of 1000, two requests at a time;
 * returns the rate in documents per second. `progress` is called every 50,000 documents.
 */
export async function writeDocs(
  db: Database,
  count: number,
  make: (i: number) => Record<string, unknown>,
  progress: (written: number, rate: number) => void,
): Promise<number> {
  const started = performance.now();
  let next = 0;
  let written = 0;
  let reported = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < count) {
        const from = next;
        next = Math.min(count, next + BATCH);
        const docs = Array.from({ length: next - from }, (_, k) => make(from + k));
        const results = await db.bulk(docs);
        const refused = results.find((r) => r.error);
        if (refused) throw new Error(`the server refused ${refused.id}: ${refused.error} ${refused.reason ?? ''}`);
        written += docs.length;
        if (written - reported >= 50_000) {
          reported = written;
          progress(written, written / ((performance.now() - started) / 1000));
        }
      }
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

/** Deletes the documents whose ids are in [startkey, endkey], in batches (the previous run's backlog). */
export async function deleteRange(db: Database, startkey: string, endkey: string): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rows } = await db.allDocs<unknown>({ startkey, endkey, limit: BATCH });
    if (rows.length === 0) return deleted;
    await db.bulk(rows.map((r) => ({ _id: r.id, _rev: r.value.rev, _deleted: true })));
    deleted += rows.length;
  }
}
