import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { compareVersions, isOlder } from '../../core/versions.js';
import { runRange, selected } from '../../coordinator/reprocess.js';

describe('step versions (core/versions.ts)', () => {
  it('orders naturally: digits as numbers, a missing version before any', () => {
    const ordered = [
      null,
      '0.9',
      '1',
      '1.0',
      '1.0.1',
      '1.2',
      '1.9',
      '1.10',
      '1.10-rc1',
      '1.10-rc2',
      '1.10-rc10',
      '2',
      '10.0',
      '10.0a',
      '99999999999999999999.1',
    ];
    for (let i = 0; i < ordered.length; i++)
      for (let j = 0; j < ordered.length; j++) {
        const sign = Math.sign(compareVersions(ordered[i], ordered[j]));
        assert.equal(sign, Math.sign(i - j), `${ordered[i]} vs ${ordered[j]}`);
      }
    assert.equal(compareVersions('1.10', '1.10'), 0);
    // Leading zeros: equal as numbers, still a total order (the texts decide).
    assert.equal(Math.sign(compareVersions('1.01', '1.1')), -Math.sign(compareVersions('1.1', '1.01')));
    assert.notEqual(compareVersions('1.01', '1.1'), 0);
    assert.ok(isOlder(null, '0'));
    assert.ok(!isOlder('2.0', '1.9'));
  });

  it('selects records older than the config, and below --below-version when given', () => {
    assert.ok(selected('1.9', '1.10'));
    assert.ok(selected(null, '1.10'));
    assert.ok(!selected('1.10', '1.10'));
    assert.ok(!selected('1.11', '1.10'), 'a newer record (the config went back) is not reprocessed');
    assert.ok(selected('1.8', '1.10', '1.9'));
    assert.ok(!selected('1.9', '1.10', '1.9'));
    assert.ok(selected('1.9', '1.10', '2.0'), 'a --below-version above the config changes nothing');
    assert.ok(!selected('1.10', '1.10', '2.0'));
  });

  it('reads --runs FIRST..LAST and --run R, and says what is wrong with anything else', () => {
    assert.deepEqual(runRange({ runs: 'lg23b002..lg23b009' }), { from: 'lg23b002', to: 'lg23b009' });
    assert.deepEqual(runRange({ runs: 'r.1..r.5' }), { from: 'r.1', to: 'r.5' });
    assert.deepEqual(runRange({ run: 'lg23b002' }), { from: 'lg23b002', to: 'lg23b002' });
    assert.equal(runRange({}), undefined);
    for (const bad of ['lg23b002', '..x', 'x..', 'a..b..c', ''])
      assert.throws(
        () => runRange({ runs: bad }),
        (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && /expected FIRST\.\.LAST/.test(e.message),
        bad,
      );
    assert.throws(() => runRange({ runs: 'a..b', run: 'a' }), /cannot be given together/);
    assert.throws(() => runRange({ run: '' }), /--run is empty/);
  });
});
