import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { allStatuses, editProblems, statusClosure, statusProblems, statusSuccessors } from '../../core/invariants.js';
import { writeProblems } from '../../core/write-rules.js';
import { ADMIN_PARTY, POLICY, STEP_NAMES, collapsedPairs, freshDoc, reachable } from '../support/generated-docs.js';

const claim = { attempts: 1, agent: 'a1', site: 'lyon', lease_until: '2026-11-26T10:01:00.000Z' };

describe('core/invariants', () => {
  const r = reachable();

  describe('statusClosure', () => {
    const closure = statusClosure(STEP_NAMES);

    it('covers every status and is reflexive', () => {
      assert.deepEqual(Object.keys(closure).sort(), allStatuses(STEP_NAMES).sort());
      for (const status of allStatuses(STEP_NAMES)) assert.ok(closure[status].includes(status), status);
    });

    it('collapses several transitions: closed reaches good, the first step and everything after', () => {
      for (const to of ['good', 'proc0 in progress', 'proc1 queued', 'proc2 failed', 'bad']) assert.ok(closure.closed.includes(to), to);
    });

    it('goes back only through a reprocess: without its edges good reaches neither closed nor the first step; bad reaches only bad', () => {
      // With the reprocess edges every status but bad reaches every status (core/invariants.ts statusClosure).
      for (const status of allStatuses(STEP_NAMES).filter((s) => s !== 'bad'))
        assert.deepEqual([...closure[status]].sort(), allStatuses(STEP_NAMES).sort(), status);
      assert.deepEqual(closure.bad, ['bad']);
      // Only those edges lead back: no other single transition goes from good to closed or to the first step.
      const successors = statusSuccessors(STEP_NAMES);
      assert.deepEqual(
        successors.good.filter((s) => s === 'closed' || s === 'good' || s.startsWith('proc0 ')),
        ['good', 'closed'],
      );
      assert.deepEqual(
        successors['proc1 in progress'].filter((s) => s.startsWith('proc0') || s === 'closed'),
        [],
      );
      assert.ok(!successors['proc1 queued'].includes('closed'));
    });

    it('contains every single transition the state machine makes', () => {
      for (const [from, to] of r.edges) assert.ok(closure[from.status].includes(to.status), `${from.status} -> ${to.status}`);
    });
  });

  describe('statusProblems', () => {
    it('accepts every document the state machine produces', () => {
      for (const doc of r.docs) assert.deepEqual(statusProblems(doc, STEP_NAMES), [], `${doc.status} ${JSON.stringify(doc)}`);
    });

    it('names what is wrong', () => {
      const base = freshDoc();
      assert.deepEqual(statusProblems({ ...base, status: 'done' }, STEP_NAMES), ['status "done" is unknown']);
      assert.deepEqual(statusProblems({ ...base, status: 'proc9 queued' }, STEP_NAMES), ['status "proc9 queued" is unknown']);
      assert.deepEqual(statusProblems({ ...base, status: 3 }, STEP_NAMES), ['status 3 is unknown']);
      assert.deepEqual(statusProblems({ ...base, status: 'good' }, STEP_NAMES), ['status good but proc0 is not done']);
      assert.deepEqual(statusProblems({ ...base, status: 'closed', proc0: { attempts: 1, ok: true } }, STEP_NAMES), ['status closed but proc0 is done']);
      assert.deepEqual(statusProblems({ ...base, status: 'good', proc0: { attempts: 1, ok: true }, proc2: { attempts: 1, ok: true } }, STEP_NAMES), [
        'proc2 is done but proc1 before it is not',
      ]);
      assert.deepEqual(statusProblems({ ...base, status: 'proc1 queued', pending: { proc1: claim } }, STEP_NAMES), [
        'status proc1 queued but proc0 is not done',
      ]);
      assert.deepEqual(statusProblems({ ...base, status: 'proc0 in progress', pending: { proc0: { attempts: 0 } } }, STEP_NAMES), [
        'status proc0 in progress but pending.proc0.agent is missing',
        'status proc0 in progress but pending.proc0.lease_until is missing',
        'status proc0 in progress but pending.proc0.attempts is 0',
      ]);
      assert.deepEqual(
        statusProblems({ ...base, status: 'proc0 in progress', proc0: claim }, STEP_NAMES),
        ['status proc0 in progress but proc0 is already done'],
        'a claim lives in pending',
      );
      assert.deepEqual(statusProblems({ ...base, status: 'proc0 failed' }, STEP_NAMES), ['status proc0 failed but pending.proc0 is missing']);
      assert.deepEqual(statusProblems({ ...base, status: 'proc0 failed', pending: { proc0: { attempts: 1 } } }, STEP_NAMES), [
        'status proc0 failed but pending.proc0.ok is not false',
      ]);
      assert.deepEqual(statusProblems({ ...base, proc0: 'yes' }, STEP_NAMES), ['proc0 is "yes", expected a record object']);
      assert.deepEqual(statusProblems({ ...base, pending: [] }, STEP_NAMES), ['pending is [], expected an object of step records']);
      assert.deepEqual(statusProblems({ ...base, pending: { proc0: { attempts: 1, ok: true } } }, STEP_NAMES), [
        'pending.proc0.ok is true: a success is recorded as proc0',
      ]);
      assert.deepEqual(statusProblems({ ...base, status: 'bad', proc2: { attempts: 1, ok: true } }, STEP_NAMES), []);
    });

    it("keeps what the original scripts' readers rely on: with status good, every procN present is a success", () => {
      const base = { ...freshDoc(), status: 'good', proc0: { attempts: 1, ok: true } };
      // A failed attempt waiting for its retry, or a `mesh retry`, lives in pending.
      assert.deepEqual(statusProblems({ ...base, proc1: { attempts: 1, ok: false, retry_after: '2026-01-01T00:00:00Z' } }, STEP_NAMES), [
        "proc1.ok is false: a step record at the top level is a success, an unfinished step's is pending.proc1",
      ]);
      assert.deepEqual(statusProblems({ ...base, proc1: { attempts: 1, ok: 'true' } }, STEP_NAMES), [
        'proc1.ok is "true": a step record at the top level is a success, an unfinished step\'s is pending.proc1',
      ]);
      assert.deepEqual(statusProblems({ ...base, pending: { proc1: { attempts: 1, ok: false, retry_after: '2026-01-01T00:00:00Z' } } }, STEP_NAMES), []);
      assert.deepEqual(statusProblems({ ...base, proc1: { ok: true }, pending: { proc1: { attempts: 1 } } }, STEP_NAMES), [
        'proc1 is done and pending at once',
      ]);
      for (const doc of r.docs) {
        if (doc.status !== 'good') continue;
        for (const step of STEP_NAMES) if (doc[step] !== undefined) assert.equal((doc[step] as { ok?: unknown }).ok, true, `${step} of ${JSON.stringify(doc)}`);
      }
    });

    it("accepts the original scripts' records, which have no attempts", () => {
      assert.deepEqual(statusProblems({ ...freshDoc(), status: 'good', proc0: { ok: true, date: 1 } }, STEP_NAMES), []);
      assert.deepEqual(
        statusProblems({ ...freshDoc(), status: 'good', proc0: { file: '/sps/x', hostname: 'ccage' }, proc1: { date: '2012-03-01 10:00:00' } }, STEP_NAMES),
        [],
        'no ok flag: present means done',
      );
    });
  });

  describe('editProblems', () => {
    it('accepts every single transition and every collapsed run of transitions', () => {
      for (const [from, to] of [...r.edges, ...collapsedPairs(r, 5000)])
        assert.deepEqual(editProblems(from, to, STEP_NAMES), [], `${from.status} -> ${to.status}`);
    });

    it('refuses leaving bad; going back is a reprocess, which the closure admits and the write rules judge', () => {
      const good = { ...freshDoc(), status: 'good', proc0: { attempts: 1, ok: true } };
      assert.deepEqual(editProblems(good, { ...good, status: 'closed' }, STEP_NAMES), []);
      assert.deepEqual(writeProblems({ ...good, status: 'closed' }, good, ADMIN_PARTY, POLICY), [
        'status closed but proc0 is done',
        'status changed from "good" to "closed" without a history entry',
      ]);
      assert.deepEqual(editProblems({ ...good, status: 'bad' }, good, STEP_NAMES), ['status cannot go from "bad" to "good"']);
    });

    it('does not judge a move away from an unknown status (statusProblems judges the new one)', () => {
      assert.deepEqual(editProblems({ ...freshDoc(), status: 'proc1 transferring' }, freshDoc(), STEP_NAMES), []);
    });
  });

  describe('writeProblems (admin party)', () => {
    const write = (newDoc: unknown, oldDoc: unknown) => writeProblems(newDoc, oldDoc, ADMIN_PARTY, POLICY);

    it('lets deletions, control documents and every reachable new document through', () => {
      assert.deepEqual(write({ _id: 'x', _deleted: true }, { ...freshDoc(), status: 'bad' }), []);
      assert.deepEqual(write({ _id: 'mesh-agent:lyon:a1', type: 'mesh-agent', status: 'whatever' }, null), []);
      for (const doc of r.docs) assert.deepEqual(write(doc, null), [], JSON.stringify(doc));
    });

    it('holds a recreated document (deleted old revision) to the rules of a new one', () => {
      const good = { ...freshDoc(), status: 'good', proc0: { attempts: 1, ok: true } };
      assert.deepEqual(write(freshDoc(), { ...good, _deleted: true }), []);
      assert.deepEqual(write({ ...good, history: [] }, { ...good, _deleted: true }), ['status changed from null to "good" without a history entry']);
    });

    it('refuses turning a pipeline document into another type', () => {
      assert.deepEqual(write({ _id: 'x', type: 'other' }, freshDoc()), ['type cannot change from "daqdocument" to "other"']);
    });
  });
});
