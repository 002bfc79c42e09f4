import assert from 'node:assert/strict';
import { backoffDelay } from '../../core/backoff.js';

describe('backoff', () => {
  const policy = { baseMs: 100, capMs: 1000, jitter: 0.5 };
  it('doubles per attempt within the jitter band', () => {
    assert.equal(
      backoffDelay(1, policy, () => 0.5),
      100,
    );
    assert.equal(
      backoffDelay(2, policy, () => 0.5),
      200,
    );
    assert.equal(
      backoffDelay(3, policy, () => 0),
      200,
    );
    assert.equal(
      backoffDelay(3, policy, () => 1),
      600,
    );
  });
  it('never exceeds the cap', () => {
    for (let attempt = 1; attempt < 100; attempt++) assert.ok(backoffDelay(attempt, policy, () => 1) <= 1000);
  });
});
