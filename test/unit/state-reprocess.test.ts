import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { type DaqDocument, type StepRecord, isDone, pendingRecord, stepRecord } from '../../core/document.js';
import { type MeshEvent, readyFor, transition } from '../../core/state.js';
import { writeProblems } from '../../core/write-rules.js';
import { ADMIN_PARTY, POLICY, freshDoc } from '../support/generated-docs.js';

const pipeline = {
  steps: [
    { name: 'proc0', max_attempts: 2, version: '1.0' },
    { name: 'proc1', max_attempts: 2, version: '2.10' },
    { name: 'proc2', max_attempts: 1 },
  ],
};
const now = new Date('2026-11-27T12:00:00.000Z');
const lease = '2026-11-27T12:05:00.000Z';

function step(doc: DaqDocument, event: MeshEvent): DaqDocument {
  const result = transition(doc, event, now, pipeline);
  assert.ok(result.ok, result.ok ? '' : result.error.message);
  // Every transition is one the server accepts from the admin party.
  assert.deepEqual(writeProblems(result.doc, doc, ADMIN_PARTY, POLICY), [], `${doc.status} --${event.type}--> ${result.doc.status}`);
  return result.doc;
}

/** Claims and succeeds `name` with the version the agent's config names. */
function run(doc: DaqDocument, name: string, version?: string): DaqDocument {
  const claimed = step(doc, {
    type: 'claim',
    step: name,
    mode: 'run',
    site: 'lyon',
    agent: 'a1',
    host: 'h',
    lease_until: lease,
    ...(version ? { version } : {}),
  });
  return step(claimed, {
    type: 'succeed',
    step: name,
    agent: 'a1',
    result: { exit_code: 0, duration_s: 1, file: `/out/${name}`, checksum: { sha256: 'a'.repeat(64) } },
  });
}

const reprocess = (name: string, why = 'proc1 2.10 fixes the baseline'): MeshEvent => ({ type: 'reprocess', step: name, by: 'operator/alice', why });

describe('state machine: reprocess', () => {
  const complete = run(run(run(freshDoc(), 'proc0', '1.0'), 'proc1', '2.9'), 'proc2');

  it('a claim records the version, and the success keeps it', () => {
    assert.equal((complete.proc0 as StepRecord).version, '1.0');
    assert.equal((complete.proc1 as StepRecord).version, '2.9');
    assert.equal('version' in (complete.proc2 as StepRecord), false, 'no version in the config: none in the record');
  });

  it("a batch job's start records the version of the job's config (what runs), not the queue's", () => {
    const queued = step(run(freshDoc(), 'proc0'), {
      type: 'claim',
      step: 'proc1',
      mode: 'queue',
      site: 'lyon',
      agent: 'a1',
      host: 'h',
      lease_until: lease,
      version: '2.9',
    });
    const started = step(queued, { type: 'start', step: 'proc1', site: 'lyon', agent: 'a1', host: 'h', lease_until: lease, version: '2.10' });
    assert.equal((stepRecord(started, 'proc1') as StepRecord).version, '2.10');
  });

  it('moves the step and every later done record whole into superseded, and makes the step ready again', () => {
    const again = step(complete, reprocess('proc1'));
    assert.equal(again.status, 'good');
    assert.equal(readyFor(again, pipeline, now), 'proc1');
    assert.ok(isDone(again, 'proc0'));
    assert.equal(again.proc1, undefined);
    assert.equal(again.proc2, undefined);
    assert.deepEqual(
      again.superseded,
      ['proc1', 'proc2'].map((name, i) => ({
        step: name,
        record: complete[name],
        at: now.toISOString(),
        by: 'operator/alice',
        user: null,
        why: 'proc1 2.10 fixes the baseline',
        version: i === 0 ? '2.10' : null,
      })),
    );
    const entry = again.history[again.history.length - 1];
    assert.deepEqual(
      { from: entry.from, to: entry.to, note: entry.note, reprocess: entry.reprocess },
      {
        from: 'good',
        to: 'good',
        note: 'proc1 2.10 fixes the baseline',
        reprocess: 'proc1',
      },
    );
    // Attempt numbers go on growing (they name the log files); none of the earlier ones counts.
    assert.deepEqual(pendingRecord(again, 'proc1'), { attempts: 1, uncounted: 1, ok: false });
    assert.deepEqual(pendingRecord(again, 'proc2'), { attempts: 1, uncounted: 1, ok: false });
  });

  it('then the step and the later ones re-run with the new version, and superseded stays as it was', () => {
    const again = step(complete, reprocess('proc1'));
    const redone = run(run(again, 'proc1', '2.10'), 'proc2');
    assert.equal(redone.status, 'good');
    assert.equal((redone.proc1 as StepRecord).version, '2.10');
    assert.equal((redone.proc1 as StepRecord).attempts, 2);
    assert.deepEqual(redone.superseded, again.superseded);
  });

  it('the first step goes back to closed; a second reprocess appends to superseded', () => {
    const first = step(complete, reprocess('proc1'));
    const second = step(run(run(first, 'proc1', '2.10'), 'proc2'), reprocess('proc0', 'new transfer'));
    assert.equal(second.status, 'closed');
    assert.equal(readyFor(second, pipeline, now), 'proc0');
    assert.deepEqual(
      second.superseded?.map((s) => s.step),
      ['proc1', 'proc2', 'proc0', 'proc1', 'proc2'],
    );
    assert.deepEqual(second.superseded?.slice(0, 2), first.superseded);
  });

  it('from a later step failed or waiting for its retry: that step starts afresh, its attempts kept but not counted', () => {
    const failing = step(run(run(freshDoc(), 'proc0'), 'proc1'), {
      type: 'claim',
      step: 'proc2',
      mode: 'run',
      site: 'lyon',
      agent: 'a1',
      host: 'h',
      lease_until: lease,
    });
    const failed = step(failing, { type: 'fail', step: 'proc2', agent: 'a1', reason: 'exit 1', retry_after: lease });
    assert.equal(failed.status, 'proc2 failed');
    const again = step(failed, reprocess('proc1'));
    assert.equal(again.status, 'good');
    assert.deepEqual(
      again.superseded?.map((s) => s.step),
      ['proc1'],
    );
    const proc2 = pendingRecord(again, 'proc2') as StepRecord;
    assert.equal(proc2.attempts, 1);
    assert.equal(proc2.uncounted, 1);
    assert.equal((proc2.past_attempts as unknown[]).length, 1, 'the failed attempt is kept in past_attempts');
    const back = step(failed, reprocess('proc0'));
    assert.equal(back.status, 'closed');
    assert.deepEqual(
      back.superseded?.map((s) => s.step),
      ['proc0', 'proc1'],
    );
  });

  it('refuses while a step is queued or in progress, from bad, for a step not done, an unknown step, or without a why', () => {
    const claimed = step(run(freshDoc(), 'proc0'), { type: 'claim', step: 'proc1', mode: 'queue', site: 'lyon', agent: 'a1', host: 'h', lease_until: lease });
    const refusals: Array<[DaqDocument, MeshEvent, RegExp]> = [
      [claimed, reprocess('proc0'), /a step is queued or in progress/],
      [step(claimed, { type: 'start', step: 'proc1', site: 'lyon', agent: 'a1', host: 'h', lease_until: lease }), reprocess('proc0'), /queued or in progress/],
      [step(complete, { type: 'mark_bad', by: 'op', reason: 'broken' }), reprocess('proc1'), /the document is bad/],
      [run(freshDoc(), 'proc0'), reprocess('proc1'), /proc1 is not done/],
      [freshDoc(), reprocess('proc0'), /proc0 is not done/],
      [complete, reprocess('proc9'), /unknown step/],
      [complete, reprocess('proc1', '  '), /says why/],
    ];
    for (const [doc, event, why] of refusals) {
      const result = transition(doc, event, now, pipeline);
      assert.equal(result.ok, false, `${doc.status}: ${JSON.stringify(event)}`);
      if (!result.ok) {
        assert.equal(result.error.code, 'ILLEGAL_TRANSITION');
        assert.match(result.error.message, why);
      }
    }
  });

  it('does not change the document it is given', () => {
    const frozen = structuredClone(complete);
    step(complete, reprocess('proc0'));
    assert.deepEqual(complete, frozen);
  });
});
