import assert from 'node:assert/strict';
import type { DaqDocument, StepRecord } from '../../core/document.js';
import { parseStatus, stepRecord } from '../../core/document.js';
import { type MeshEvent, TRANSITIONS, UNSTARTED_LIMIT, isComplete, readyFor, transition } from '../../core/state.js';
import { placed } from '../support/records.js';

const pipeline = {
  steps: [
    { name: 'proc0', max_attempts: 3 },
    { name: 'proc1', max_attempts: 3 },
    { name: 'proc2', max_attempts: 2 },
  ],
};
const names = pipeline.steps.map((s) => s.name);
const now = new Date('2026-11-27T12:00:00.000Z');
const past = '2026-11-27T11:00:00.000Z';
const future = '2026-11-27T13:00:00.000Z';

function doc(status: string, records: Record<string, StepRecord> = {}): DaqDocument {
  return {
    _id: 'run_lg23b002_000',
    _rev: '3-abc',
    type: 'daqdocument',
    run_name: 'lg23b002',
    file_number: 0,
    file: '/data/lg23b002_000',
    size_in_bytes: 1,
    date_closed: past,
    status,
    history: [],
    ...placed(records),
  } as DaqDocument;
}
const ok = (attempts = 1): StepRecord => ({ attempts, ok: true, site: 'modane', agent: 'a1' });
const claimed = (lease: string, attempts = 1, agent = 'a1'): StepRecord => ({ attempts, site: 'modane', agent, host: 'h', lease_until: lease });

/** A document in every state the pipeline can be in. */
const STATES: Record<string, DaqDocument> = {
  'closed fresh': doc('closed'),
  'closed retry due': doc('closed', { proc0: { attempts: 1, ok: false, retry_after: past } }),
  'closed retry later': doc('closed', { proc0: { attempts: 1, ok: false, retry_after: future } }),
  'proc0 in progress': doc('proc0 in progress', { proc0: claimed(future) }),
  'proc0 in progress expired': doc('proc0 in progress', { proc0: claimed(past) }),
  'proc0 in progress expired at limit': doc('proc0 in progress', { proc0: claimed(past, 3) }),
  'proc0 failed': doc('proc0 failed', { proc0: { attempts: 3, ok: false, reason: 'x' } }),
  'good after proc0': doc('good', { proc0: ok() }),
  'proc1 queued': doc('proc1 queued', { proc0: ok(), proc1: claimed(future) }),
  'proc1 in progress': doc('proc1 in progress', { proc0: ok(), proc1: claimed(future) }),
  'good after proc1': doc('good', { proc0: ok(), proc1: ok() }),
  'proc2 in progress at limit': doc('proc2 in progress', { proc0: ok(), proc1: ok(), proc2: claimed(future, 2) }),
  'proc2 failed': doc('proc2 failed', { proc0: ok(), proc1: ok(), proc2: { attempts: 2, ok: false } }),
  complete: doc('good', { proc0: ok(), proc1: ok(), proc2: ok() }),
  bad: doc('bad'),
};

function events(step: string): MeshEvent[] {
  return [
    { type: 'claim', step, mode: 'run', site: 'modane', agent: 'a2', host: 'h', lease_until: future },
    { type: 'claim', step, mode: 'queue', site: 'lyon', agent: 'a2', host: 'h', lease_until: future, batch: { system: 'slurm', id: '1' } },
    { type: 'start', step, site: 'lyon', agent: 'a3', host: 'h', lease_until: future },
    { type: 'renew', step, agent: 'a1', lease_until: future },
    { type: 'renew', step, agent: 'intruder', lease_until: future },
    { type: 'submitted', step, batch: { system: 'slurm', id: '42', stdout: '/logs/job.out' }, script: '/logs/job.sh', command: 'mesh run-batch' },
    { type: 'succeed', step, agent: 'a1', result: { exit_code: 0, duration_s: 1 } },
    { type: 'succeed', step, agent: 'intruder', result: { exit_code: 0, duration_s: 1 } },
    { type: 'fail', step, agent: 'a1', reason: 'exit 3', retry_after: future },
    { type: 'release', step, agent: 'a1' },
    { type: 'expire', step, by: 'modane/a2' },
    { type: 'lost', step, by: 'lyon/a2', reason: 'job cancelled' },
    { type: 'retry', step, by: 'operator/x' },
    { type: 'exhaust', step, by: 'modane/a2' },
  ];
}
const ALL_EVENTS: MeshEvent[] = [...names.flatMap(events), { type: 'mark_bad', by: 'operator/x', reason: 'broken file' }];

describe('state machine', () => {
  describe('every (state, event) pair', () => {
    for (const [stateName, before] of Object.entries(STATES)) {
      it(`from ${stateName}: legal results follow the table, illegal ones are typed errors`, () => {
        const from = parseStatus(before.status, names)!;
        for (const event of ALL_EVENTS) {
          const frozen = structuredClone(before);
          const result = transition(before, event, now, pipeline);
          assert.deepEqual(before, frozen, 'transition must not mutate its input');
          if (!result.ok) {
            assert.equal(result.error.code, 'ILLEGAL_TRANSITION');
            continue;
          }
          const to = parseStatus(result.doc.status, names);
          assert.ok(to, `${event.type} produced unknown status ${result.doc.status}`);
          if (event.type === 'renew' || event.type === 'submitted') {
            assert.equal(result.doc.status, before.status);
            assert.equal(result.doc.history.length, 0, `${event.type} writes no history`);
            continue;
          }
          const allowed = TRANSITIONS[from.kind].map((k) =>
            k === 'ready' ? (event.type !== 'mark_bad' && names.indexOf(event.step) === 0 ? 'closed' : 'good') : k,
          );
          assert.ok(allowed.includes(to.kind), `${stateName} --${event.type}--> ${result.doc.status} is not in the table`);
          assert.equal(result.doc.history.length, 1);
          assert.deepEqual(
            { ...result.doc.history[0], at: undefined, by: undefined, note: undefined },
            { at: undefined, by: undefined, note: undefined, from: before.status, to: result.doc.status, rev: '3-abc', user: null },
          );
          // Records of ok steps never become un-ok.
          for (const name of names) if ((before[name] as StepRecord | undefined)?.ok === true) assert.equal((result.doc[name] as StepRecord).ok, true);
        }
      });
    }
  });

  it('claims only the step that is ready, and counts attempts', () => {
    const claim = (d: DaqDocument, step: string) =>
      transition(d, { type: 'claim', step, mode: 'run', site: 'modane', agent: 'a2', host: 'h', lease_until: future }, now, pipeline);
    const first = claim(STATES['closed fresh'], 'proc0');
    assert.ok(first.ok);
    assert.equal(first.doc.status, 'proc0 in progress');
    assert.equal((stepRecord(first.doc, 'proc0') as StepRecord).attempts, 1);
    assert.equal(claim(STATES['closed fresh'], 'proc1').ok, false);
    assert.equal(claim(STATES['closed retry later'], 'proc0').ok, false, 'a retry is not due yet');
    const reclaimed = claim(STATES['proc0 in progress expired'], 'proc0');
    assert.ok(reclaimed.ok);
    assert.equal((stepRecord(reclaimed.doc, 'proc0') as StepRecord).attempts, 2);
    assert.equal(claim(STATES['proc0 in progress'], 'proc0').ok, false, 'a live lease cannot be taken');
    assert.equal(claim(STATES['proc0 in progress expired at limit'], 'proc0').ok, false);
    assert.equal(claim(STATES.complete, 'proc2').ok, false);
  });

  it('a failure retries until max_attempts, then is final until an operator retries', () => {
    const fail = (d: DaqDocument, step: string) => transition(d, { type: 'fail', step, agent: 'a1', reason: 'exit 3', retry_after: future }, now, pipeline);
    const once = fail(STATES['proc1 in progress'], 'proc1');
    assert.ok(once.ok);
    assert.equal(once.doc.status, 'good');
    assert.equal((stepRecord(once.doc, 'proc1') as StepRecord).retry_after, future);
    assert.equal(readyFor(once.doc, pipeline, now), undefined);
    assert.equal(readyFor(once.doc, pipeline, new Date(future)), 'proc1');
    const last = fail(STATES['proc2 in progress at limit'], 'proc2');
    assert.ok(last.ok);
    assert.equal(last.doc.status, 'proc2 failed');
    const retried = transition(last.doc, { type: 'retry', step: 'proc2', by: 'operator/x' }, now, pipeline);
    assert.ok(retried.ok);
    assert.equal(retried.doc.status, 'good');
    assert.equal(readyFor(retried.doc, pipeline, now), 'proc2');
    assert.equal(retried.doc.history.length, 2, 'history is kept across a retry');
  });

  it('success makes the next step ready; the last one completes the document', () => {
    const done = transition(
      STATES['proc1 in progress'],
      { type: 'succeed', step: 'proc1', agent: 'a1', result: { exit_code: 0, duration_s: 2 } },
      now,
      pipeline,
    );
    assert.ok(done.ok);
    assert.equal(done.doc.status, 'good');
    assert.equal((stepRecord(done.doc, 'proc1') as StepRecord).ok, true);
    assert.equal((stepRecord(done.doc, 'proc1') as StepRecord).lease_until, undefined);
    assert.equal(readyFor(done.doc, pipeline, now), 'proc2');
    assert.ok(isComplete(STATES.complete, pipeline));
    assert.ok(!isComplete(done.doc, pipeline));
  });

  it('a ready step whose attempts are used up (max_attempts lowered) fails, for an operator; one with attempts left does not', () => {
    const lowered = { steps: [{ name: 'proc0', max_attempts: 1 }, ...pipeline.steps.slice(1)] };
    const due = STATES['closed retry due'];
    assert.equal(readyFor(due, lowered, now), 'proc0', 'ready by its status and retry_after');
    assert.equal(
      transition(due, { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'a2', host: 'h', lease_until: future }, now, lowered).ok,
      false,
      'but no claim is legal',
    );
    const spent = transition(due, { type: 'exhaust', step: 'proc0', by: 'modane/a2' }, now, lowered);
    assert.ok(spent.ok);
    assert.equal(spent.doc.status, 'proc0 failed');
    assert.equal(stepRecord(spent.doc, 'proc0')?.reason, 'attempt limit 1 reached (1 counted attempts)');
    assert.equal(spent.doc.history.at(-1)?.to, 'proc0 failed');
    assert.equal(
      transition(due, { type: 'exhaust', step: 'proc0', by: 'modane/a2' }, now, pipeline).ok,
      false,
      'with attempts left the step is claimed, not failed',
    );
    const retried = transition(spent.doc, { type: 'retry', step: 'proc0', by: 'operator/x' }, now, lowered);
    assert.ok(retried.ok && readyFor(retried.doc, lowered, now) === 'proc0', 'mesh retry makes it claimable again');
    assert.ok(
      transition(retried.doc, { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'a2', host: 'h', lease_until: future }, now, lowered).ok,
    );
  });

  it('a release gives the attempt back: it keeps its number but stops counting', () => {
    const released = transition(STATES['proc0 in progress'], { type: 'release', step: 'proc0', agent: 'a1' }, now, pipeline);
    assert.ok(released.ok);
    assert.equal(released.doc.status, 'closed');
    assert.equal((stepRecord(released.doc, 'proc0') as StepRecord).attempts, 1);
    assert.equal((stepRecord(released.doc, 'proc0') as StepRecord).uncounted, 1);
    assert.equal(readyFor(released.doc, pipeline, now), 'proc0');
    const again = transition(
      released.doc,
      { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'a2', host: 'h', lease_until: future },
      now,
      pipeline,
    );
    assert.ok(again.ok);
    assert.equal((stepRecord(again.doc, 'proc0') as StepRecord).attempts, 2, 'the next attempt has a new number (and new log files)');
  });

  describe('a batch job that dies charges only the document it was running', () => {
    const queue = (d: DaqDocument, at: Date): DaqDocument => {
      const r = transition(
        d,
        { type: 'claim', step: 'proc1', mode: 'queue', site: 'lyon', agent: 'sub', host: 'h', lease_until: future, batch: { system: 'slurm', id: '7' } },
        at,
        pipeline,
      );
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      return r.doc;
    };
    const lose = (d: DaqDocument, at: Date): DaqDocument => {
      const r = transition(d, { type: 'lost', step: 'proc1', by: 'lyon/sub', reason: 'batch job 7 was cancelled' }, at, pipeline);
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      return r.doc;
    };

    it('a queued document lost with its job is ready again with no attempt counted, however often it happens', () => {
      let d = doc('good', { proc0: ok() });
      const n = UNSTARTED_LIMIT - 1;
      for (let i = 0; i < n; i++) d = lose(queue(d, now), now);
      assert.equal(d.status, 'good', `${n} lost jobs that never started it did not fail it (max_attempts 3)`);
      const record = stepRecord(d, 'proc1') as StepRecord;
      assert.equal(record.attempts, n, 'each claim has its own number');
      assert.equal(record.uncounted, n, 'and none counts');
      assert.match(record.reason ?? '', /never started, not counted/);
      assert.match(d.history.at(-1)?.note ?? '', /batch job 7 was cancelled; never started, not counted/);
    });

    it(`but ${UNSTARTED_LIMIT} jobs that all died before starting it fail it, with what to look at; mesh retry starts the count again`, () => {
      let d = doc('good', { proc0: ok() });
      for (let i = 0; i < UNSTARTED_LIMIT; i++) d = lose(queue(d, now), now);
      assert.equal(d.status, 'proc1 failed');
      assert.match(
        (stepRecord(d, 'proc1') as StepRecord).reason ?? '',
        new RegExp(`${UNSTARTED_LIMIT} batch jobs ended without starting it: look at the jobs' stderr and batch.mesh`),
      );
      const retried = transition(d, { type: 'retry', step: 'proc1', by: 'operator' }, now, pipeline);
      assert.ok(retried.ok);
      const again = lose(queue(retried.doc, now), now);
      assert.equal(again.status, 'good');
      assert.equal((stepRecord(again, 'proc1') as StepRecord).unstarted, 1);
    });

    it('the document in progress when the job died is charged: at the limit it fails', () => {
      let d = doc('good', { proc0: ok() });
      for (let i = 0; i < 3; i++) {
        const started = transition(queue(d, now), { type: 'start', step: 'proc1', site: 'lyon', agent: 'job', host: 'n1', lease_until: future }, now, pipeline);
        assert.ok(started.ok);
        d = lose(started.doc, now);
      }
      assert.equal(d.status, 'proc1 failed');
      assert.equal((stepRecord(d, 'proc1') as StepRecord).uncounted, undefined);
    });

    it('a queued claim whose lease lapsed was never started either: not counted', () => {
      const d = queue(doc('good', { proc0: ok() }), new Date(Date.parse(past) - 3600_000));
      const lapsed = transition(
        { ...d, ...placed({ proc0: ok(), proc1: { ...(stepRecord(d, 'proc1') as StepRecord), lease_until: past } }) },
        { type: 'expire', step: 'proc1', by: 'lyon/sub' },
        now,
        pipeline,
      );
      assert.ok(lapsed.ok, lapsed.ok ? '' : lapsed.error.message);
      assert.equal(lapsed.doc.status, 'good');
      assert.equal((stepRecord(lapsed.doc, 'proc1') as StepRecord).uncounted, 1);
    });
  });

  describe('retries keep their history straight', () => {
    const claimEvent = (agent: string): MeshEvent => ({
      type: 'claim',
      step: 'proc1',
      mode: 'run',
      site: 'modane',
      agent,
      host: 'h',
      lease_until: future,
      user: 'modane-agent',
    });
    const failEvent = (agent: string, code: number): MeshEvent => ({
      type: 'fail',
      step: 'proc1',
      agent,
      reason: `exit ${code}`,
      result: { exit_code: code, stderr_tail: `oops ${code}`, duration_s: 1 },
      retry_after: past,
    });
    /** Runs `n` failing attempts of proc1 from `d`, at increasing clock readings. */
    function failTimes(d: DaqDocument, n: number, start: number): DaqDocument {
      let current = d;
      for (let i = 0; i < n; i++) {
        const at = new Date(now.getTime() + (start + i) * 60_000);
        const claimed = transition(current, claimEvent(`a${start + i}`), at, pipeline);
        assert.ok(claimed.ok, claimed.ok ? '' : claimed.error.message);
        const record = stepRecord(claimed.doc, 'proc1') as StepRecord;
        for (const field of ['exit_code', 'reason', 'stderr_tail', 'finished', 'retry_after', 'ok'])
          assert.equal(record[field], undefined, `a new claim carries no ${field} of an earlier attempt`);
        assert.equal(record.account, 'modane-agent');
        const failed = transition(claimed.doc, failEvent(`a${start + i}`, start + i), new Date(at.getTime() + 1000), pipeline);
        assert.ok(failed.ok);
        current = failed.doc;
      }
      return current;
    }

    it('numbers only grow across mesh retry, and the limit counts from the retry', () => {
      const failed = failTimes(STATES['good after proc0'], 3, 0);
      assert.equal(failed.status, 'proc1 failed');
      const retried = transition(failed, { type: 'retry', step: 'proc1', by: 'operator/x' }, now, pipeline);
      assert.ok(retried.ok);
      const record = stepRecord(retried.doc, 'proc1') as StepRecord;
      assert.equal(record.attempts, 3);
      assert.equal(record.uncounted, 3);
      assert.equal(record.previous_failure, undefined);
      const again = failTimes(retried.doc, 3, 3);
      assert.equal(again.status, 'proc1 failed', 'three more attempts after the retry, then failed');
      assert.equal((stepRecord(again, 'proc1') as StepRecord).attempts, 6);
    });

    it('keeps the last 10 attempts with how each ended, finished never before started', () => {
      let d = failTimes(STATES['good after proc0'], 3, 0);
      for (let round = 1; round <= 4; round++) {
        const retried = transition(d, { type: 'retry', step: 'proc1', by: 'operator/x' }, now, pipeline);
        assert.ok(retried.ok);
        d = failTimes(retried.doc, 3, round * 3);
      }
      const record = stepRecord(d, 'proc1') as StepRecord;
      assert.equal(record.attempts, 15);
      const past = record.past_attempts as Array<{ attempt: number; exit_code: number; reason: string; started: string; finished: string }>;
      assert.equal(past.length, 10);
      assert.deepEqual(
        past.map((a) => a.attempt),
        [5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      );
      for (const attempt of past) {
        assert.equal(attempt.exit_code, attempt.attempt - 1);
        assert.equal(attempt.reason, `exit ${attempt.attempt - 1}`);
        assert.ok(attempt.finished > attempt.started, JSON.stringify(attempt));
      }
      assert.equal(record.exit_code, 14, 'the record itself holds the latest attempt');
    });

    it('every status change appends one history entry naming its account; nothing is dropped', () => {
      const d = failTimes(STATES['good after proc0'], 3, 0);
      assert.equal(d.history.length, 6);
      for (let i = 1; i < d.history.length; i++) assert.equal(d.history[i].from, d.history[i - 1].to);
      assert.deepEqual(
        d.history.filter((e) => e.to === 'proc1 in progress').map((e) => e.user),
        ['modane-agent', 'modane-agent', 'modane-agent'],
      );
    });
  });

  it('refuses unknown statuses', () => {
    const result = transition(doc('proc9 in progress'), { type: 'mark_bad', by: 'x', reason: 'y' }, now, pipeline);
    assert.equal(result.ok, false);
  });
});
