import assert from 'node:assert/strict';
import { type Adoption, adoptDatabase, adoptionOf } from '../../coordinator/adopt.js';
import { designDocument, writePolicy } from '../../couchapp/design.js';
import type { DaqDocument } from '../../core/document.js';
import { COORDINATOR_ROLE, OPERATOR_ROLE } from '../../core/roles.js';
import { writeProblems } from '../../core/write-rules.js';
import { readCorpus } from '../support/corpus.js';

interface Expectation {
  adopt: Adoption['kind'];
  change?: string;
  reason?: string;
}

const corpus = readCorpus<never, { documents: DaqDocument[]; expect: Record<string, Expectation> }>('original-documents.json');
const steps = ['proc0', 'proc1', 'proc2'].map((name) => ({ name, site: 'alpha', max_attempts: 3 }));
const config = { doc_type: 'daqdocument', steps } as unknown as Parameters<typeof designDocument>[0];
const policy = writePolicy(config);
const options = { now: new Date('2026-12-01T12:00:00.000Z'), by: 'mesh/adopt', user: 'coordinator', retryFailed: true };
const COORDINATOR = { name: 'coordinator', roles: [COORDINATOR_ROLE] };

describe('coordinator/adopt: what adoption does to each document of the original scripts', () => {
  for (const doc of corpus.documents) {
    const expected = corpus.expect[doc._id];
    it(`${doc._id} (${doc.status}): ${expected.adopt}`, () => {
      const adoption = adoptionOf({ ...doc, _rev: '1-a' }, { steps }, options);
      assert.equal(adoption.kind, expected.adopt, JSON.stringify(adoption));
      if (adoption.kind === 'write') {
        assert.match(adoption.change, new RegExp(expected.change as string));
        // The server's own rules accept it from the coordinator's account, not from an operator's.
        assert.deepEqual(writeProblems(adoption.doc, { ...doc, _rev: '1-a' }, COORDINATOR, policy), []);
        assert.ok(
          writeProblems(adoption.doc, { ...doc, _rev: '1-a' }, { name: 'op', roles: [OPERATOR_ROLE] }, policy).length > 0,
          'an operator cannot carry it',
        );
        assert.deepEqual(adoptionOf(adoption.doc, { steps }, options), { kind: 'keep' }, 'adopting twice changes nothing');
      }
      if (adoption.kind === 'stuck') assert.match(adoption.reason, new RegExp(expected.reason as string));
    });
  }

  it('without --retry-failed a failure is recorded and stays failed, for mesh retry', () => {
    const failed = corpus.documents.find((d) => d._id === 'lg23b002_005') as DaqDocument;
    const adoption = adoptionOf(failed, { steps }, { ...options, retryFailed: false });
    assert.equal(adoption.kind, 'write');
    if (adoption.kind !== 'write') return;
    assert.equal(adoption.doc.status, 'proc1 failed');
    assert.deepEqual(adoption.doc.pending, {
      proc1: { attempts: 0, ok: false, reason: 'failed under the original scripts', adopted: options.now.toISOString() },
    });
    assert.equal(adoption.doc.history, undefined, 'no status change, no history entry');
  });
});

describe('coordinator/adopt: paging through _all_docs', () => {
  it('reads a database of more than one page once, each page starting at the next id (startkey passed as the id, encoded once by the client)', async () => {
    const ids = Array.from({ length: 1203 }, (_, i) => `note_${String(i).padStart(5, '0')}`);
    const calls: unknown[] = [];
    // A stand-in for store/database.ts Database.allDocs: its qs values are raw (the transport JSON-encodes startkey).
    const db = {
      async allDocs(qs: { startkey?: unknown; limit: number }) {
        calls.push(qs.startkey);
        if (calls.length > 10) throw new Error('paging does not advance');
        const from = qs.startkey === undefined ? 0 : ids.findIndex((id) => id >= (qs.startkey as string));
        return {
          rows: ids
            .slice(from < 0 ? ids.length : from, (from < 0 ? ids.length : from) + qs.limit)
            .map((id) => ({ id, key: id, value: { rev: '1-a' }, doc: { _id: id, type: 'note' } })),
        };
      },
      async bulk() {
        return [];
      },
    };
    const report = await adoptDatabase(db as never, { doc_type: 'daqdocument', steps } as never, { ...options, dryRun: true });
    assert.equal(report.other, ids.length);
    assert.deepEqual(calls, [undefined, 'note_00500', 'note_01000']);
  });
});
