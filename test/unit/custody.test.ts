import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { parseBytes, formatBytes } from '../../core/bytes.js';
import { mergeLeaves } from '../../coordinator/audit.js';
import { type CustodyRecord, custodyVerdict, recordsFor } from '../../core/custody.js';
import type { DaqDocument } from '../../core/document.js';

const SHA = 'a'.repeat(64);
const doc = (custody: CustodyRecord[] = [], extra: Partial<DaqDocument> = {}): DaqDocument => ({
  _id: 'run_lg23b002_000',
  type: 'daqdocument',
  run_name: 'lg23b002',
  file_number: 0,
  file: '/data/lg23b002_000',
  size_in_bytes: 100,
  checksum: { sha256: SHA },
  date_closed: '2026-11-26T10:00:00.000Z',
  status: 'good',
  history: [],
  custody,
  ...extra,
});
const copy = (site: string, sha = SHA, size = 100): CustodyRecord => ({
  site,
  step: 'proc0',
  file: `/${site}/f`,
  sha256: sha,
  size_in_bytes: size,
  verified_at: '2026-11-26T11:00:00.000Z',
  account: `${site}-agent`,
});
const rule = { copies: 2, daqSite: 'modane', closedBefore: new Date('2026-11-27T00:00:00.000Z') };

describe('core/custody: when the DAQ may delete a raw file', () => {
  it('needs N agreeing copies at N distinct sites other than the DAQ', () => {
    assert.equal(custodyVerdict(doc([copy('lyon')]), undefined, rule).kind, 'hold');
    assert.deepEqual(custodyVerdict(doc([copy('lyon'), copy('lyon')]), undefined, rule), { kind: 'hold', reason: 'too few copies', detail: '1 of 2 (lyon)' });
    assert.equal(custodyVerdict(doc([copy('lyon'), copy('modane')]), undefined, rule).kind, 'hold', "the DAQ's own copy does not count");
    const ok = custodyVerdict(doc([copy('lyon'), copy('kit')]), undefined, rule);
    assert.equal(ok.kind, 'purge');
    assert.deepEqual(ok.kind === 'purge' ? ok.relied.map((r) => r.site) : [], ['lyon', 'kit']);
  });

  it('a disagreeing copy (sha256 or size) blocks, whatever else agrees', () => {
    for (const bad of [copy('cc', 'b'.repeat(64)), copy('cc', SHA, 99)]) {
      const verdict = custodyVerdict(doc([copy('lyon'), copy('kit'), bad]), undefined, rule);
      assert.equal(verdict.kind === 'hold' && verdict.reason, 'a copy disagrees');
    }
  });

  it('holds files too recent or without a catalogued checksum', () => {
    assert.equal(custodyVerdict(doc([copy('lyon'), copy('kit')], { date_closed: '2026-11-28T00:00:00.000Z' }), undefined, rule).kind, 'hold');
    const none = custodyVerdict(doc([copy('lyon'), copy('kit')], { checksum: undefined }), undefined, rule);
    assert.equal(none.kind === 'hold' && none.reason, 'no catalogued checksum');
  });

  it("counts a run document's archive for the members it lists with the file's sha256", () => {
    const archive = (sha: string) => ({
      custody: [{ ...copy('tape'), step: 'archive', sha256: 'f'.repeat(64), members: [{ doc_id: 'run_lg23b002_000', sha256: sha }] }],
    });
    assert.deepEqual(
      recordsFor(doc(), archive(SHA)).map((r) => [r.site, r.sha256]),
      [['tape', SHA]],
    );
    assert.equal(custodyVerdict(doc([copy('lyon')]), archive(SHA), rule).kind, 'purge');
    const wrong = custodyVerdict(doc([copy('lyon')]), archive('c'.repeat(64)), rule);
    assert.equal(wrong.kind === 'hold' && wrong.reason, 'a copy disagrees');
    assert.equal(custodyVerdict(doc([copy('lyon')]), { custody: [{ ...copy('tape'), members: [{ doc_id: 'other', sha256: SHA }] }] }, rule).kind, 'hold');
  });
});

describe('a replication conflict keeps every custody record and the purge (coordinator/audit.ts mergeLeaves)', () => {
  it('adds what only a losing leaf recorded, once per site and step, and the purge of any leaf', () => {
    const purged = {
      at: '2026-11-27T00:00:00.000Z',
      by: 'modane/purge',
      user: 'modane-agent',
      site: 'modane',
      file: '/data/lg23b002_000',
      custody: [copy('lyon')],
    };
    const winner = { ...doc([copy('lyon')]), _rev: '5-b' };
    const loser = { ...doc([copy('lyon', 'c'.repeat(64)), copy('kit')]), purged, _rev: '5-a' };
    const merged = mergeLeaves(winner, [loser], ['proc0']);
    assert.deepEqual(
      (merged.custody as CustodyRecord[]).map((r) => [r.site, r.sha256[0]]),
      [
        ['lyon', 'a'],
        ['kit', 'a'],
      ],
    );
    assert.deepEqual(merged.purged, purged);
    assert.equal(mergeLeaves({ ...doc(), _rev: '2-a' }, [{ ...doc(), _rev: '2-b' }], ['proc0']).purged, undefined);
  });
});

describe('core/bytes', () => {
  it('reads sizes with decimal and binary units, refuses the rest', () => {
    assert.deepEqual(['50GB', '1.5TB', '100GiB', '512', 512, '2 MB', '1kib'].map(parseBytes), [50e9, 1.5e12, 100 * 1024 ** 3, 512, 512, 2e6, 1024]);
    for (const bad of ['50 gigs', '-1GB', '', 'GB', 1.5, -3, '1e3', null, '99999PB']) assert.equal(parseBytes(bad), undefined, String(bad));
    assert.deepEqual([0, 999, 1000, 65_537, 82.4e9].map(formatBytes), ['0 B', '999 B', '1.00 kB', '65.5 kB', '82.4 GB']);
  });
});
