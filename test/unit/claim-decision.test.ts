import assert from 'node:assert/strict';
import { decideClaim } from '../../agents/claim-decision.js';
import type { StepConfig } from '../../config/types.js';
import type { DaqDocument, StepRecord } from '../../core/document.js';
import { historyTo } from '../../core/provenance.js';
import { placed } from '../support/records.js';

const step = (name: string, max_attempts = 3) =>
  ({ name, site: 'modane', max_attempts, run: ['/bin/true', '{file}'], out: `/out/${name}/{run_name}_{file_number}`, lease_s: 60 }) as unknown as StepConfig;
const steps = [step('proc0'), step('proc1', 2)];
const config = { steps };
const now = new Date('2026-11-27T12:00:00.000Z');
const past = '2026-11-27T11:00:00.000Z';
const future = '2026-11-27T13:00:00.000Z';

function doc(status: string, records: Record<string, StepRecord> = {}, fields: Partial<DaqDocument> = {}): DaqDocument {
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
    history: historyTo(status, ['proc0', 'proc1']),
    ...placed(records),
    ...fields,
  } as DaqDocument;
}
const ok = (): StepRecord => ({ attempts: 1, ok: true, site: 'modane', agent: 'a1' });
const claim = (lease: string, attempts = 1): StepRecord => ({ attempts, site: 'modane', agent: 'a1', host: 'h', lease_until: lease });

describe('claim decision (pure)', () => {
  it('claims the ready step the site owns, and nothing of another site', () => {
    assert.deepEqual(decideClaim(doc('closed'), steps, config, now), { kind: 'claim', step: steps[0], reclaim: false });
    assert.deepEqual(decideClaim(doc('closed'), [steps[1]], config, now), { kind: 'none' });
    assert.deepEqual(decideClaim(doc('good', { proc0: ok() }), steps, config, now), { kind: 'claim', step: steps[1], reclaim: false });
  });

  it('leaves a live claim alone and takes over a lapsed one', () => {
    assert.deepEqual(decideClaim(doc('proc0 in progress', { proc0: claim(future) }), steps, config, now), { kind: 'none' });
    assert.deepEqual(decideClaim(doc('proc0 in progress', { proc0: claim(past) }), steps, config, now), { kind: 'claim', step: steps[0], reclaim: true });
  });

  it('a lapsed claim at the attempt limit expires instead of being taken over', () => {
    assert.deepEqual(decideClaim(doc('proc0 in progress', { proc0: claim(past, 3) }), steps, config, now), { kind: 'expire', step: steps[0] });
  });

  it('a ready step whose attempts already reach the limit (lowered since) is exhausted, not claimed', () => {
    const retried = doc('good', { proc0: ok(), proc1: { attempts: 2, ok: false, retry_after: past } as StepRecord });
    assert.deepEqual(decideClaim(retried, steps, config, now), { kind: 'exhaust', step: steps[1] });
  });

  it('a document whose fields cannot make a command is marked bad; a malformed one is skipped', () => {
    const hostile = decideClaim(doc('closed', {}, { run_name: '../../etc' }), steps, config, now);
    assert.equal(hostile.kind, 'mark_bad');
    const contradictory = decideClaim(doc('good'), steps, config, now);
    assert.equal(contradictory.kind, 'skip', 'good with no step done contradicts its records');
  });
});
