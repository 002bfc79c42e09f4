import assert from 'node:assert/strict';
import { behindText, linkFreshness, stallAfterMs, type MarkerReading } from '../../coordinator/freshness.js';
import { ReplicationMonitor } from '../../coordinator/replication.js';

const T0 = Date.parse('2026-12-01T12:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
/** Marker number n of a series started at T0, written every 30 s (round k written at 30·(n−1) s). */
const marker = (n: number, interval_s = 30): MarkerReading => ({ n, written: at((n - 1) * interval_s), since: at(0), interval_s });
const now = (s: number) => T0 + s * 1000;

describe('freshness: how far a link is behind, from the markers', () => {
  it("is 0 when the target holds the source's newest marker, whatever its age", () => {
    assert.deepEqual(linkFreshness(marker(3), marker(3), now(61)), { behind_s: 0, marker_age_s: 1 });
    // A reader that sees the copy ahead of its reading of the source (a write in between) is up to date too.
    assert.deepEqual(linkFreshness(marker(3), marker(4), now(95)), { behind_s: 0, marker_age_s: 5 });
    // The coordinator stopped writing: nothing written on the source is known to be missing.
    assert.equal(linkFreshness(marker(3), marker(3), now(3600)).behind_s, 0);
  });

  it("one marker missing: exactly the age of the source's newest marker", () => {
    // Just written, not yet carried: a few tenths of a second, not a round period.
    assert.deepEqual(linkFreshness(marker(4), marker(3), now(90.3)), { behind_s: 0.3, marker_age_s: 30.3 });
    assert.equal(linkFreshness(marker(4), marker(3), now(100)).behind_s, 10);
  });

  it('several missing: from the first missing one, taken one period after the copy (the newest if earlier)', () => {
    // Copy is marker 2 (written at 30 s); marker 3 was due at 60 s; the source is at marker 10.
    assert.equal(linkFreshness(marker(10), marker(2), now(275)).behind_s, 215);
    // Rounds slower than the copy's period: the newest marker bounds the first missing one.
    const slow = { n: 5, written: at(40), since: at(0), interval_s: 30 };
    assert.equal(linkFreshness(slow, { n: 2, written: at(0), since: at(0), interval_s: 100 }, now(50)).behind_s, 10);
  });

  it('grows with time while nothing arrives, so a stalled link crosses the threshold', () => {
    const copy = marker(2);
    const readings = [100, 200, 400].map((s) => linkFreshness(marker(Math.floor(s / 30) + 1), copy, now(s)).behind_s as number);
    assert.ok(readings[0] < readings[1] && readings[1] < readings[2], String(readings));
    assert.equal(readings[2], 340);
  });

  it('source not read (unreachable from the reader): the next marker is taken to be due one period after the copy', () => {
    assert.equal(linkFreshness('unread', marker(3), now(75)).behind_s, 0, 'within a period of the copy: nothing known missing');
    assert.equal(linkFreshness('unread', marker(3), now(150)).behind_s, 60);
    assert.equal(linkFreshness(undefined, marker(3), now(150)).behind_s, 60, 'a source that lost its marker reads the same');
  });

  it("target without any marker of the source: missing since the source's first marker", () => {
    assert.deepEqual(linkFreshness(marker(5), undefined, now(130)), { behind_s: 130, marker_age_s: null });
  });

  it('unknown when the target was not read or no marker was ever written', () => {
    assert.deepEqual(linkFreshness(marker(5), 'unread', now(130)), { behind_s: null, marker_age_s: null, unknown: 'target not read' });
    assert.deepEqual(linkFreshness(undefined, undefined, now(1)), { behind_s: null, marker_age_s: null, unknown: 'no marker written on the source yet' });
    assert.deepEqual(linkFreshness('unread', undefined, now(1)), { behind_s: null, marker_age_s: null, unknown: 'no marker written on the source yet' });
  });

  it("never negative (a reader whose clock is behind the coordinator's), in tenths of a second", () => {
    assert.equal(linkFreshness(marker(4), marker(3), now(89)).behind_s, 0);
    assert.equal(linkFreshness(marker(4), marker(3), now(90.04)).behind_s, 0);
    assert.equal(linkFreshness(marker(4), marker(3), now(90.06)).behind_s, 0.1);
  });

  it('says it in words', () => {
    assert.equal(behindText('modane', 'kit', { behind_s: 2.5 }), 'kit is 2.5 s behind modane');
    assert.equal(behindText('modane', 'kit', { behind_s: null, unknown: 'target not read' }), 'kit behind modane: unknown (target not read)');
  });

  it('stall threshold: three rounds, at least a minute; a restarted job gets that long again', () => {
    assert.equal(stallAfterMs(1_000), 60_000);
    assert.equal(stallAfterMs(30_000), 90_000);
    const monitor = new ReplicationMonitor({ intervalMs: 1_000, stallAfterMs: 5_000 });
    assert.equal(monitor.stalled('job', null, 0), false);
    assert.equal(monitor.stalled('job', 4.9, 0), false);
    assert.equal(monitor.stalled('job', 5, 0), true);
    monitor.restarted.set('job', 10_000);
    assert.equal(monitor.stalled('job', 60, 14_999), false);
    assert.equal(monitor.stalled('job', 60, 15_000), true);
  });
});
