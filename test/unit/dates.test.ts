import assert from 'node:assert/strict';
import { originalDateIso, originalDateMs } from '../../core/dates.js';
import { COMMON_ES5, READY_ES5 } from '../../couchapp/es5.js';

/** The views' port, compiled as the views run it. */
const es5IsoDate = new Function('STEPS', `${COMMON_ES5}${READY_ES5}\nreturn isoDate;`)(['proc0']) as (value: unknown) => string | null;

describe("core/dates: the original scripts' dates", () => {
  it('reads the three forms as the same instant', () => {
    const instant = '2013-03-01T10:00:00.123Z';
    for (const form of [
      '2013-03-01T10:00:00.123Z',
      '2013-03-01T11:00:00.123+01:00',
      '2013-03-01T04:30:00.123-0530',
      '2013-03-01 10:00:00.123456',
      '2013-03-01T10:00:00.123',
      1362132000.123,
      1362132000123,
    ]) {
      assert.equal(originalDateIso(form), instant, String(form));
    }
    assert.equal(originalDateIso('2013-03-01 10:00'), '2013-03-01T10:00:00.000Z');
    assert.equal(originalDateMs(1362132000), Date.parse('2013-03-01T10:00:00Z'));
  });

  it('names nothing for what is not a date', () => {
    for (const bad of [
      '2013-02-30 10:00:00',
      '2013-13-01 10:00:00',
      '2013-03-01 24:00:00',
      'yesterday',
      '',
      '2013-03-01',
      '1362132000',
      null,
      undefined,
      Number.NaN,
      -5,
      0,
      [],
      {},
      true,
    ]) {
      assert.equal(originalDateIso(bad), undefined, JSON.stringify(bad) ?? String(bad));
    }
  });

  it("the views' ES5 port agrees on every form", () => {
    const samples: unknown[] = [
      '2013-03-01T10:00:00Z',
      '2013-03-01T10:00:00.5+02:00',
      '2012-02-29 23:59:59.999999',
      '2013-02-29 00:00:00',
      '1999-12-31T23:59:60Z',
      '2026-11-26T10:00:00.000Z',
      'x',
      1e10,
      1e11,
      1.5,
      -1,
      Infinity,
      null,
      [],
      '2013-03-01T10:00:00+0000',
    ];
    for (let i = 0; i < 500; i++) {
      const t = Math.floor(Math.random() * 4e12);
      const iso = new Date(t).toISOString();
      samples.push(t, t / 1000, iso, iso.replace('T', ' ').replace('Z', ''), iso.replace('Z', '+03:30'));
    }
    for (const sample of samples) assert.equal(es5IsoDate(sample), originalDateIso(sample) ?? null, JSON.stringify(sample));
  });
});
