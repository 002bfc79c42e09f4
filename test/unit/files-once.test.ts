/**
 * Every mesh-wide number counts files once (issue 13, §2), the summary line says the worst state
 * first, `mesh status` exits by it, and a file's state reads in words: the pure parts.
 */
import assert from 'node:assert/strict';
import { parseMeshConfig } from '../../config/load.js';
import type { Alert } from '../../coordinator/alerts.js';
import { claimsOnce, countFilesOnce, failedOnce } from '../../coordinator/files-once.js';
import type { DatabaseStatus, StepCounts } from '../../coordinator/status.js';
import { statusExitCode, statusSummary } from '../../coordinator/summary.js';
import type { DaqDocument, StepRecord } from '../../core/document.js';
import { describeProgress, shortAge, utcClock } from '../../core/progress.js';

/** The reference topology: proc0 claimed on modane's server, proc1 and proc2 on kit's (lyon shares it). */
const config = parseMeshConfig(
  {
    sites: {
      modane: { server: 'http://127.0.0.1:5984', reachable: false, long_running: true, may_run: ['proc0'] },
      kit: { server: 'http://127.0.0.1:5985', reachable: true, long_running: true, may_run: [] },
      lyon: { server: 'http://127.0.0.1:5985', reachable: true, long_running: false, credentials_of: 'kit', may_run: ['proc1', 'proc2'] },
    },
    ingest: { site: 'modane' },
    steps: [
      { name: 'proc0', site: 'modane', run: ['true'], out: '/o/{run_name}_{file_number}', max_attempts: 3 },
      { name: 'proc1', site: 'lyon', run: ['true'], out: '/o/{run_name}_{file_number}', max_attempts: 3 },
      { name: 'proc2', site: 'lyon', run: ['true'], out: '/o/{run_name}_{file_number}', max_attempts: 3 },
    ],
  },
  'test',
);
const now = new Date('2026-12-01T08:30:00.000Z');

const counts = (over: Partial<StepCounts> = {}): StepCounts => ({ done: 0, ready: 0, queued: 0, in_progress: 0, failed: 0, ...over });

function server(site: string, docCount: number, steps: Record<string, Partial<StepCounts>>, over: Partial<DatabaseStatus> = {}): DatabaseStatus {
  return {
    site,
    url: `http://${site}`,
    reachable: true,
    doc_count: docCount,
    by_status: {},
    steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, counts(v)])),
    conflicts: 0,
    in_flight: [],
    failed: [],
    ...over,
  };
}

const failedRow = (doc: string, step: string, reason = 'exited with 4') => ({
  doc,
  step,
  reason,
  exit_code: 4,
  stderr_tail: 'disk on fire',
  run_name: 'lg23b000',
});

/** 40 files, all through proc0; 4 failed proc1, the rest through proc2: as both servers hold it once replication caught up. */
const settled = { proc0: { done: 40 }, proc1: { done: 36, failed: 4 }, proc2: { done: 36 } };

describe('mesh-wide numbers, each file once', () => {
  it('two servers that agree: each number once, not the sum of the replicas, and no difference named', () => {
    const files = countFilesOnce(config, [server('modane', 40, settled), server('kit', 40, settled)], 0);
    assert.equal(files.count, 40);
    assert.deepEqual(files.steps.proc0, counts({ done: 40 }));
    assert.deepEqual(files.steps.proc1, counts({ done: 36, failed: 4 }));
    assert.deepEqual(files.steps_from, { proc0: 'modane', proc1: 'kit', proc2: 'kit' });
    assert.deepEqual(files.differences, []);
  });

  it('a copy that lags is named with the files it is behind on, the numbers from the step’s own server', () => {
    // kit has 37 of modane's 40 documents and has not heard of 2 proc0 results yet.
    const modane = server('modane', 40, { proc0: { done: 38, ready: 1, in_progress: 1 }, proc1: { done: 30 }, proc2: { done: 30 } });
    const kit = server('kit', 37, { proc0: { done: 36, ready: 1 }, proc1: { done: 32, in_progress: 2 }, proc2: { done: 31 } });
    const files = countFilesOnce(config, [modane, kit], 0);
    assert.deepEqual(files.steps.proc0, counts({ done: 38, ready: 1, in_progress: 1 }), 'proc0 from modane');
    assert.deepEqual(files.steps.proc1, counts({ done: 32, in_progress: 2 }), 'proc1 from kit');
    assert.deepEqual(
      files.differences.map((d) => d.text),
      ['modane is behind on 4 files (proc1, proc2)', 'kit is behind on 3 files (proc0; 3 files not there yet)'],
    );
    assert.deepEqual(
      files.differences.map((d) => [d.server, d.direction, d.files, d.missing]),
      [
        ['modane', 'behind', 4, 0],
        ['kit', 'behind', 3, 3],
      ],
    );
  });

  it('a server down does not halve the totals: its steps come from the copy that is left', () => {
    const kitDown = server('kit', 0, {}, { reachable: false, error: 'kit: server unreachable (connect ECONNREFUSED)' });
    const files = countFilesOnce(config, [server('modane', 40, settled), kitDown], 0);
    assert.equal(files.count, 40);
    assert.deepEqual(files.steps.proc1, counts({ done: 36, failed: 4 }));
    assert.deepEqual(files.steps_from, { proc0: 'modane', proc1: 'modane', proc2: 'modane' });
    const none = countFilesOnce(config, [{ ...kitDown, site: 'modane' }, kitDown], 0);
    assert.deepEqual(none.steps_from, { proc0: null, proc1: null, proc2: null });
    assert.equal(none.count, 0);
  });

  it('a failed file held by both servers is one row naming both; a claim too, with the newest lease', () => {
    const stepsFrom = { proc0: 'modane', proc1: 'kit', proc2: 'kit' };
    const modane = server('modane', 40, settled, { failed: [failedRow('run_a', 'proc1', 'old words'), failedRow('run_b', 'proc1')] });
    const kit = server('kit', 40, settled, { failed: [failedRow('run_a', 'proc1'), failedRow('run_b', 'proc1')] });
    const rows = failedOnce(config, [modane, kit], { stepsFrom, limit: 50 });
    assert.deepEqual(
      rows.map((r) => [r.doc, r.step, r.servers, r.reason]),
      [
        ['run_a', 'proc1', ['kit', 'modane'], 'exited with 4'],
        ['run_b', 'proc1', ['kit', 'modane'], 'exited with 4'],
      ],
    );
    const claim = (doc: string, lease: string) => ({
      doc,
      step: 'proc0',
      agent: 'm1',
      site: 'modane',
      attempts: 1,
      lease_until: lease,
      lease_age_s: 3,
      expired: false,
    });
    const claims = claimsOnce(
      config,
      [
        server('modane', 1, {}, { in_flight: [claim('run_c', '2026-12-01T08:31:00.000Z')] }),
        server('kit', 1, {}, { in_flight: [claim('run_c', '2026-12-01T08:30:30.000Z')] }),
      ],
      { stepsFrom, limit: 50 },
    );
    assert.deepEqual(
      claims.map((c) => [c.doc, c.servers, c.lease_until]),
      [['run_c', ['modane', 'kit'], '2026-12-01T08:31:00.000Z']],
    );
  });

  it("a row the step's own server has moved past is a lagging copy's: left out, unless that server's list was cut", () => {
    const stepsFrom = { proc0: 'modane', proc1: 'kit', proc2: 'kit' };
    // kit retried run_a's proc1 already; modane still holds it failed.
    const modane = server('modane', 40, settled, { failed: [failedRow('run_a', 'proc1'), failedRow('run_b', 'proc1')] });
    const kit = server('kit', 40, settled, { failed: [failedRow('run_b', 'proc1')] });
    assert.deepEqual(
      failedOnce(config, [modane, kit], { stepsFrom, limit: 50 }).map((r) => r.doc),
      ['run_b'],
    );
    // kit's list was cut at its limit: what it lacks may be past the cut.
    assert.deepEqual(
      failedOnce(config, [modane, kit], { stepsFrom, limit: 1 }).map((r) => r.doc),
      ['run_a', 'run_b'],
    );
    // kit cannot be read: modane's copy is all there is (and stands in for it).
    const kitDown = server('kit', 0, {}, { reachable: false, unreachable: true });
    assert.deepEqual(
      failedOnce(config, [modane, kitDown], { stepsFrom: { proc0: 'modane', proc1: 'modane', proc2: 'modane' }, limit: 50 }).map((r) => r.doc),
      ['run_a', 'run_b'],
    );
  });
});

describe('the summary line and the exit status of mesh status', () => {
  const stalled: Alert = {
    kind: 'step_stalled',
    key: 'step_stalled:proc1',
    message: 'proc1 has 80 ready documents nobody claimed',
    action: "look at lyon's agent",
    since: new Date(now.getTime() - 12 * 60_000).toISOString(),
  };

  it('says the worst first: "4 failed · kit unreachable · proc1 stalled 12 min", and exits 3 (a server could not be read)', () => {
    const kitDown = server('kit', 0, {}, { reachable: false, unreachable: true, error: 'kit: server unreachable (connect ECONNREFUSED)' });
    const databases = [server('modane', 40, settled), kitDown];
    const files = countFilesOnce(config, databases, 0);
    const status = { files, databases, in_flight: [], unreadable: [{ server: 'kit', reason: 'connect ECONNREFUSED', unreachable: true as const }] };
    const summary = statusSummary(status, [stalled], now);
    assert.equal(summary.text, '4 failed · kit unreachable · proc1 stalled 12 min');
    assert.equal(summary.level, 'bad');
    assert.equal(statusExitCode(status, [stalled]), 3);
    // A server that answered with an error is not down: it "could not be read".
    const erring = { ...status, unreadable: [{ server: 'kit', reason: '404 not_found no_db_file' }] };
    assert.equal(statusSummary(erring, [], now).text, '4 failed · kit could not be read');
  });

  it('exits 1 for a failed file or an alert, 0 when all is well (and says so with the count)', () => {
    const databases = [server('modane', 40, settled), server('kit', 40, settled)];
    const status = { files: countFilesOnce(config, databases, 0), databases, in_flight: [], unreadable: [] };
    assert.equal(statusExitCode(status, []), 1, '4 failed');
    const clean = { proc0: { done: 40 }, proc1: { done: 40 }, proc2: { done: 38, in_progress: 2 } };
    const well = [server('modane', 40, clean), server('kit', 40, clean)];
    const healthy = { files: countFilesOnce(config, well, 0), databases: well, in_flight: [], unreadable: [] };
    assert.equal(statusExitCode(healthy, []), 0);
    assert.equal(statusSummary(healthy, [], now).text, 'all well · 40 files · 2 running');
    assert.equal(statusExitCode(healthy, [stalled]), 1);
    assert.equal(statusSummary(healthy, [stalled], now).level, 'warning');
  });

  it('nothing read is not all quiet: "not authorised: nothing could be read"', () => {
    const refused = (site: string) =>
      server(site, 0, {}, { reachable: false, not_authorised: true, error: 'not authorised: You are not allowed to access this db.' });
    const databases = [refused('modane'), refused('kit')];
    const status = {
      files: countFilesOnce(config, databases, 0),
      databases,
      in_flight: [],
      unreadable: databases.map((d) => ({ server: d.site, reason: d.error as string, not_authorised: true as const })),
    };
    assert.equal(statusSummary(status, [], now).text, 'not authorised: nothing could be read (modane, kit)');
    assert.equal(statusExitCode(status, []), 3);
  });
});

describe("a file's state in words", () => {
  const doc = (status: string, records: Record<string, unknown> = {}, pending: Record<string, StepRecord> = {}): DaqDocument => ({
    _id: 'run_x_000',
    type: 'daqdocument',
    run_name: 'x',
    file_number: 0,
    file: '/d/x',
    size_in_bytes: 0,
    date_closed: now.toISOString(),
    status,
    history: [],
    ...records,
    ...(Object.keys(pending).length ? { pending } : {}),
  });
  const ok = { ok: true, attempts: 1 };

  it('"complete" only when every step is done; "good" with a step left is waiting for it', () => {
    assert.deepEqual(describeProgress(doc('good', { proc0: ok, proc1: ok, proc2: ok }), config, now), { kind: 'complete', text: 'complete: every step done' });
    assert.deepEqual(describeProgress(doc('good', { proc0: ok }), config, now), { kind: 'waiting', step: 'proc1', text: 'proc0 done, waiting for proc1' });
    assert.equal(describeProgress(doc('closed'), config, now).text, 'waiting for proc0');
  });

  it('a failed attempt to be tried again says which attempt comes and when (UTC); a final failure which it was', () => {
    const retry = { proc1: { attempts: 1, ok: false, reason: 'exited with 4', retry_after: '2026-12-01T08:31:00.000Z' } };
    assert.equal(describeProgress(doc('good', { proc0: ok }, retry), config, now).text, 'retrying proc1 (attempt 2 of 3, next at 08:31 UTC)');
    const failed = { proc1: { attempts: 3, ok: false, reason: 'exited with 4' } };
    assert.equal(describeProgress(doc('proc1 failed', { proc0: ok }, failed), config, now).text, 'proc1 failed (attempt 3 of 3): exited with 4');
    const running = { proc1: { attempts: 4, uncounted: 3, site: 'lyon', agent: 'l1', lease_until: now.toISOString() } };
    assert.equal(describeProgress(doc('proc1 in progress', { proc0: ok }, running), config, now).text, 'proc1 running by lyon/l1 (attempt 1 of 3)');
  });

  it('one clock: UTC, labelled, the date only when it is not today; ages in one unit', () => {
    assert.equal(utcClock('2026-12-01T08:31:59.123Z', now), '08:31 UTC');
    assert.equal(utcClock('2026-11-30T23:05:00.000Z', now), '2026-11-30 23:05 UTC');
    assert.deepEqual([45, 720, 7200, 3 * 86_400].map(shortAge), ['45 s', '12 min', '2 h', '3 d']);
  });
});
