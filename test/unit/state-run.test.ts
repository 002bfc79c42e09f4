import assert from 'node:assert/strict';
import type { DaqDocument, RunIdentity, StepRecord } from '../../core/document.js';
import { stepRecord } from '../../core/document.js';
import { transition } from '../../core/state.js';
import { placed } from '../support/records.js';

const pipeline = { steps: [{ name: 'proc0', max_attempts: 3 }] };
const now = new Date('2026-11-27T12:00:00.000Z');
const past = '2026-11-27T11:00:00.000Z';
const future = '2026-11-27T13:00:00.000Z';
const run: RunIdentity = { host: 'daq1', pid: 4242, pgid: 4242, start_time: 123456, boot_id: 'b0' };

function doc(status: string, proc0?: StepRecord): DaqDocument {
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
    ...(proc0 ? placed({ proc0 }) : {}),
  } as DaqDocument;
}

function next(from: DaqDocument, event: Parameters<typeof transition>[1]): DaqDocument {
  const result = transition(from, event, now, pipeline);
  assert.ok(result.ok, result.ok ? '' : result.error.message);
  return result.doc;
}

describe('state machine: the run identity in the claim', () => {
  it('a renewal by the claim holder records the run, without a history entry; a later renewal keeps it', () => {
    const claimed = doc('proc0 in progress', { attempts: 1, site: 'modane', agent: 'a1', host: 'daq1', lease_until: future });
    const recorded = next(claimed, { type: 'renew', step: 'proc0', agent: 'a1', lease_until: future, run });
    assert.deepEqual((stepRecord(recorded, 'proc0') as StepRecord).run, run);
    assert.equal(recorded.history?.length, 0);
    const renewed = next(recorded, { type: 'renew', step: 'proc0', agent: 'a1', lease_until: future });
    assert.deepEqual((stepRecord(renewed, 'proc0') as StepRecord).run, run);
    assert.equal(
      transition(claimed, { type: 'renew', step: 'proc0', agent: 'intruder', lease_until: future, run }, now, pipeline).ok,
      false,
      'only the claim holder names the run',
    );
  });

  it("a new claim never carries an earlier attempt's run: not on a takeover of an expired claim, not after a failure", () => {
    const expired = doc('proc0 in progress', { attempts: 1, site: 'modane', agent: 'a1', host: 'daq1', lease_until: past, run });
    const takenOver = next(expired, { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'a2', host: 'daq1', lease_until: future });
    assert.equal('run' in (stepRecord(takenOver, 'proc0') as StepRecord), false);
    assert.equal((stepRecord(takenOver, 'proc0') as StepRecord).attempts, 2);
    const failed = doc('closed', { attempts: 1, ok: false, site: 'modane', agent: 'a1', retry_after: past, run });
    const again = next(failed, {
      type: 'claim',
      step: 'proc0',
      mode: 'queue',
      site: 'lyon',
      agent: 'a3',
      host: 'ui1',
      lease_until: future,
      batch: { system: 'slurm' },
    });
    assert.equal('run' in (stepRecord(again, 'proc0') as StepRecord), false);
  });
});
