import assert from 'node:assert/strict';
import { type Machine, median, ms, percentile, ratio, renderReport } from '../../bench/report.js';
import { waitUntil, within } from '../../bench/wait.js';

const machine: Machine = {
  cpu: 'Test CPU',
  cores: 2,
  ram_gib: 4,
  kernel: '6.1.0',
  node: 'v20.0.0',
  nats_server: 'v2.9.10',
  sshd: 'OpenSSH_9.2',
  slurm: 'slurm-wlm 22.05.8',
  load_at_start: 0.5,
};

describe('bench report', () => {
  it('percentiles by nearest rank, median, ratios and durations', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 95), 95);
    assert.equal(percentile(values, 100), 100);
    assert.equal(percentile([7], 95), 7);
    assert.ok(Number.isNaN(percentile([], 50)));
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(ratio(1, 4), '0.25×');
    assert.equal(ratio(30, 4), '7.5×');
    assert.equal(ratio(400, 4), '100×');
    assert.equal(ratio(1, 0), 'n/a');
    assert.equal(ratio(Number.NaN, 1), 'n/a');
    assert.equal(ms(12.4), '12 ms');
    assert.equal(ms(12_345), '12.3 s');
    assert.equal(ms(Number.NaN), 'n/a');
  });

  it('prints each figure, its baseline and the ratio on one aligned line, under the machine and the command', () => {
    const text = renderReport(
      machine,
      [
        {
          title: 'demo section',
          command: 'node dist/bench/main.js --only demo',
          rows: [
            { measure: 'short', value: '1 MB/s', baseline: '2 MB/s ref', ratio: '0.50×' },
            { measure: 'a longer measure', value: '10 ms' },
          ],
          notes: ['a note'],
        },
      ],
      new Date('2026-01-01T00:00:00Z'),
      new Date('2026-01-01T00:01:00Z'),
    );
    const lines = text.split('\n');
    assert.match(lines[0], /^CouchMesh benchmark, 2026-01-01T00:00:00.000Z \(60 s\)$/);
    assert.match(lines[1], /Test CPU, 2 cores, 4 GiB RAM, Linux 6\.1\.0, Node v20\.0\.0/);
    assert.match(lines[2], /nats-server v2\.9\.10, OpenSSH_9\.2, slurm-wlm 22\.05\.8; load average at start 0\.5/);
    assert.ok(lines.includes('== demo section'));
    assert.ok(lines.includes('   reproduce: node dist/bench/main.js --only demo'));
    const header = lines.find((l) => l.includes('baseline (same run)')) as string;
    const row = lines.find((l) => l.startsWith('  short')) as string;
    const other = lines.find((l) => l.startsWith('  a longer measure')) as string;
    assert.equal(row, '  short             1 MB/s  2 MB/s ref           0.50×');
    // Values are right-aligned in one column, whatever the measure's length.
    assert.equal(row.indexOf('1 MB/s') + '1 MB/s'.length, other.indexOf('10 ms') + '10 ms'.length);
    assert.equal(header.indexOf('baseline'), row.indexOf('2 MB/s ref'));
    assert.ok(lines.includes('   - a note'));
  });

  it('a wait ends at its deadline, on a call that never answers, or when interrupted', async () => {
    let calls = 0;
    assert.equal(await waitUntil('the third call', async () => ++calls >= 3 && calls, { timeoutMs: 5000, everyMs: 1 }), 3);
    await assert.rejects(
      waitUntil('nothing', async () => false, { timeoutMs: 50, everyMs: 10 }),
      /timed out after 0.05 s waiting for nothing/,
    );
    await assert.rejects(
      waitUntil('a stuck call', () => new Promise<boolean>(() => undefined), { timeoutMs: 50 }),
      /waiting for a stuck call/,
    );
    await assert.rejects(within(new Promise(() => undefined), 20, 'a request'), /timed out after 0 s waiting for a request/);
    const interrupted = new AbortController();
    interrupted.abort();
    await assert.rejects(
      waitUntil('anything', async () => false, { timeoutMs: 5000, signal: interrupted.signal }),
      /interrupted while waiting for anything/,
    );
  });
});
