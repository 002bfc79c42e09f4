/**
 * Hand-built documents for the `_design/proc` tests (pipeline proc0, proc1, proc2), written as
 * the original scripts or any writer might leave them: every status, records with gaps, records
 * that are null, documents without a run name or a file number, of another type, file numbers
 * 0, 7 and 1234. Unfinished steps' records are under `pending` (core/document.ts), as CouchMesh
 * writes them. Written straight into a database, before any validate_doc_update is pushed.
 */

import { placed } from './records.js';

export const ORIGINAL_DOC_TYPE = 'daqdocument';

export interface LooseDoc {
  _id: string;
  type?: string;
  run_name?: unknown;
  file_number?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

const done = { ok: true, attempts: 1 };
const claimed = { attempts: 1, agent: 'a1', site: 'lyon', lease_until: '2026-11-26T10:01:00.000Z' };
const failed = { ok: false, attempts: 3, reason: 'exit 1' };
/** A record of the original scripts: no `ok` flag. */
const original = { date: '2013-03-01 10:00:00', hostname: 'ccage' };

function doc(
  id: string,
  run: string | undefined,
  file: number | undefined,
  status: string | undefined,
  records: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): LooseDoc {
  return {
    _id: id,
    type: ORIGINAL_DOC_TYPE,
    ...(run === undefined ? {} : { run_name: run }),
    ...(file === undefined ? {} : { file_number: file }),
    ...(status === undefined ? {} : { status }),
    ...placed(records),
    ...extra,
  };
}

/** The documents, by name: the integration test's expected answers refer to them. */
export function originalDocs(): LooseDoc[] {
  return [
    doc('d01', 'lg23b001', 5, 'good', { proc0: done, proc1: done }),
    doc('d02', 'lg23b002', 0, 'closed'),
    doc('d03', 'lg23b002', 7, 'good', { proc0: original, proc1: original }),
    doc('d04', 'lg23b002', 1234, 'good', { proc0: done, proc1: done }),
    doc('d05', 'lg23b002', 3, 'good', { proc0: done }),
    doc('d06', 'lg23b002', 4, 'good', { proc0: done, proc1: done, proc2: done }),
    doc('d07', 'lg23b002', 8, 'good', { proc0: done, proc2: done }),
    doc('d08', 'lg23b002', 9, 'proc1 queued', { proc0: done, proc1: claimed }),
    doc('d09', 'lg23b002', 10, 'proc1 in progress', { proc0: done, proc1: claimed }),
    doc('d10', 'lg23b002', 11, 'proc2 failed', { proc0: done, proc1: done, proc2: failed }),
    doc('d11', 'lg23b002', 12, 'bad', { proc0: done }),
    doc('d12', 'lh18c004', 1, 'good', { proc0: done, proc1: done }),
    doc('d13', 'lh18c004', 2, 'proc0 in progress', { proc0: claimed }),
    doc('d14', 'lh18c004', 3, 'proc0 failed', { proc0: failed }),
    doc('d15', 'lh18c004', 4, 'proc0 queued', { proc0: claimed }),
    doc('d16', 'lh18c004', 5, 'proc2 in progress', { proc0: done, proc1: done, proc2: claimed }),
    doc('d17', 'lh18c004', 6, 'proc2 queued', { proc0: done, proc1: done, proc2: claimed }),
    doc('d18', 'lh18c004', 7, 'proc1 failed', { proc0: done, proc1: failed }),
    doc('d19', 'lh18c005', 0, 'good', { proc0: done, proc1: done }),
    doc('d20', undefined, 1, 'closed'),
    doc('d21', 'lh18c006', undefined, 'good', { proc0: done, proc1: done }),
    doc('d22', 'lh18c004', 8, 'good', { proc0: done, proc1: done }, { type: 'otherdoc' }),
    doc('d23', 'lh18c006', 1, 'closed', { proc0: null }),
    doc('d24', 'lh18c006', 2, 'closed', { proc0: { ok: false, attempts: 1, retry_after: '2026-11-26T10:05:00.000Z' } }),
    doc('d25', 'lh18c006', 3, 'good', { proc1: done }),
    doc('d26', 'lh18c006', 4, undefined, { proc0: done }),
  ];
}
