import assert from 'node:assert/strict';
import { parseMeshConfig } from '../../config/load.js';
import { placed } from '../support/records.js';
import type { DaqDocument } from '../../core/document.js';
import {
  type RunLogLine,
  checkDuplicates,
  checkNothingLost,
  checkRuns,
  docOfInput,
  isFinal,
  overlappingRuns,
  runSpans,
  unsettled,
} from '../faults/invariants.js';
import { FAULT_KINDS, FaultDeck, planRound, random } from '../faults/schedule.js';

const config = parseMeshConfig(
  {
    database: 'datadb',
    doc_type: 'daqdocument',
    sites: { alpha: { server: 'http://127.0.0.1:5984', reachable: true, long_running: true, log_dir: '/tmp/logs' } },
    ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: [
      { name: 'proc1', site: 'alpha', run: ['node', '/x/convert.mjs', '{prev_out}', '{out}'], out: '/out/converted/{run_name}_{file_number}.txt' },
      { name: 'proc2', site: 'alpha', run: ['node', '/x/analyse.mjs', '{prev_out}', '{out}'], out: '/out/analysis/{run_name}_{file_number}.json' },
    ],
  },
  '/tmp/mesh.json',
);

function doc(status: string, fields: Record<string, unknown> = {}, history: Array<{ to: string }> = []): DaqDocument {
  return {
    _id: 'run_lg23b000_001',
    _rev: '5-a',
    type: 'daqdocument',
    run_name: 'lg23b000',
    file_number: 1,
    file: '/daq/lg23b000_001',
    size_in_bytes: 1,
    date_closed: '2026-11-27T00:00:00.000Z',
    status,
    history: history.map((h) => ({ at: '2026-11-27T00:00:00.000Z', from: null, by: 'x', ...h })),
    ...placed(fields),
  };
}

const ok = (finished: string, sha = 'aa') => ({ attempts: 1, ok: true, finished, checksum: { sha256: sha }, file: '/out/x' });
const run = (program: string, input: string, at: string) => ({ program, input, pid: 1, at });

describe('fault harness: the invariant checks catch what they are meant to catch', () => {
  it('a final state is good with every record ok, or failed with a reason', () => {
    assert.equal(isFinal(doc('good', { proc1: ok('t'), proc2: ok('t') }), config), true);
    assert.equal(isFinal(doc('good', { proc1: ok('t') }), config), false);
    assert.equal(isFinal(doc('proc2 failed', { proc1: ok('t'), proc2: { attempts: 3, ok: false, reason: 'exited with 4' } }), config), true);
    assert.equal(isFinal(doc('proc2 failed', { proc1: ok('t'), proc2: { attempts: 3, ok: false } }), config), false);
    assert.equal(isFinal(doc('proc2 in progress', { proc1: ok('t'), proc2: { attempts: 1 } }), config), false);
  });

  it('settled means final, conflict-free and the same revision on every server', () => {
    const done = doc('good', { proc1: ok('t'), proc2: ok('t') });
    const both = (a: DaqDocument, b: DaqDocument) =>
      new Map([
        ['modane', new Map([[a._id, a]])],
        ['kit', new Map([[b._id, b]])],
      ]);
    assert.deepEqual(unsettled(config, both(done, done), [done._id]), []);
    assert.match(unsettled(config, both(done, { ...done, _rev: '6-b' }), [done._id])[0], /revisions differ/);
    assert.match(unsettled(config, both(done, { ...done, _conflicts: ['5-z'] }), [done._id])[0], /conflicts/);
    assert.match(
      unsettled(
        config,
        new Map([
          ['modane', new Map([[done._id, done]])],
          ['kit', new Map()],
        ]),
        [done._id],
      )[0],
      /missing on kit/,
    );
  });

  it('a run needs its own claim: two runs under one claim, or a run after the success, are double runs', () => {
    const claimed = doc('good', { proc1: ok('2026-11-27T00:00:10.000Z'), proc2: ok('2026-11-27T00:00:20.000Z') }, [
      { to: 'proc1 in progress' },
      { to: 'good' },
      { to: 'proc2 in progress' },
      { to: 'good' },
    ]);
    const docs = new Map([[claimed._id, claimed]]);
    const once = [run('convert', '/raw/lg23b000_001', '2026-11-27T00:00:05.000Z'), run('analyse', '/c/lg23b000_001.txt', '2026-11-27T00:00:15.000Z')];
    assert.deepEqual(checkRuns(config, docs, once), []);
    const twice = [...once, run('convert', '/raw/lg23b000_001', '2026-11-27T00:00:06.000Z')];
    assert.match(checkRuns(config, docs, twice)[0].detail, /2 runs for 1 claims/);
    const late = [...once.slice(0, 1), run('analyse', '/c/lg23b000_001.txt', '2026-11-27T00:00:25.000Z')];
    assert.match(checkRuns(config, docs, late)[0].detail, /after its success/);
    // A retry after a failure or a lapsed lease comes with a second claim: not a double run.
    const retried = doc('good', { proc1: ok('2026-11-27T00:00:10.000Z') }, [
      { to: 'proc1 in progress' },
      { to: 'closed' },
      { to: 'proc1 in progress' },
      { to: 'good' },
    ]);
    assert.deepEqual(checkRuns(config, new Map([[retried._id, retried]]), [once[0], run('convert', '/raw/lg23b000_001', '2026-11-27T00:00:08.000Z')]), []);
    // A run recorded only by a losing replication branch counts as that branch's claim.
    const merged = { ...claimed, duplicates: [{ step: 'proc1', site: 'lyon', agent: 'a', rev: '4-x' }] };
    assert.deepEqual(checkRuns(config, new Map([[merged._id, merged]]), twice), []);
  });

  it('two runs of one (doc, step) that overlap in time are a double run, even with a claim each', () => {
    // A retry after a lapsed lease: two claims. Runs as fault-switch.mjs logs them: start, alive ticks, end.
    const retried = doc('good', { proc1: ok('2026-11-27T00:00:30.000Z') }, [
      { to: 'proc1 in progress' },
      { to: 'closed' },
      { to: 'proc1 in progress' },
      { to: 'good' },
    ]);
    const docs = new Map([[retried._id, retried]]);
    const t = (s: number) => `2026-11-27T00:00:${String(s).padStart(2, '0')}.000Z`;
    const life = (pid: number, from: number, to: number, ended: boolean): RunLogLine[] => [
      { program: 'convert', input: '/raw/lg23b000_001', pid, at: t(from), started: t(from), phase: 'start' },
      ...Array.from({ length: to - from }, (_, i) => ({
        program: 'convert',
        input: '/raw/lg23b000_001',
        pid,
        at: t(from + i + 1),
        started: t(from),
        phase: 'alive' as const,
      })),
      ...(ended ? [{ program: 'convert', input: '/raw/lg23b000_001', pid, at: t(to), started: t(from), phase: 'end' as const }] : []),
    ];
    // The first run killed at 10 s (no end), the second started at 12 s: one after the other.
    const sequential = [...life(11, 1, 10, false), ...life(12, 12, 20, true)];
    assert.deepEqual(checkRuns(config, docs, sequential), []);
    // The first run orphaned (its agent killed) and still alive at 15 s when the second started at 12 s.
    const orphaned = [...life(11, 1, 15, true), ...life(12, 12, 20, true)];
    const [violation] = checkRuns(config, docs, orphaned);
    assert.equal(violation?.invariant, 'double-run');
    assert.match(violation.detail, /1 overlapping run\(s\) for 0 cross-server duplicate/);
    // A killed run without an end line overlaps all the same: its last sign of life counts.
    assert.equal(checkRuns(config, docs, [...life(11, 1, 13, false), ...life(12, 12, 20, true)]).length, 1);
    // Interleaved log lines (two runs writing at once) and pid reuse are told apart by start.
    assert.deepEqual(
      runSpans([...life(7, 1, 3, true), ...life(7, 5, 6, true)]).map((r) => [r.pid, r.last - r.start, r.ended]),
      [
        [7, 2000, true],
        [7, 1000, true],
      ],
    );
    assert.equal(overlappingRuns(runSpans(orphaned)).length, 1);
    // Only a cross-server double claim kept in duplicates[] may run at the same time as another.
    const duplicated = { ...retried, duplicates: [{ step: 'proc1', site: 'lyon', agent: 'a', rev: '4-x' }] };
    assert.deepEqual(checkRuns(config, new Map([[duplicated._id, duplicated]]), orphaned), []);
  });

  it('duplicates[] must keep the provenance of the run', () => {
    assert.deepEqual(checkDuplicates(new Map([['a', doc('good', { duplicates: [{ step: 'proc1', site: 'lyon', agent: null, rev: '3-x' }] })]])), []);
    assert.equal(checkDuplicates(new Map([['a', doc('good', { duplicates: [{ step: 'proc1', site: null, agent: null, rev: '3-x' }] })]])).length, 1);
  });

  it('an ok record may not become un-ok or change its checksum, and no document may vanish', () => {
    const before = new Map([['run_lg23b000_001', new Map([['proc1', 'aa']])]]);
    const snapshot = (d?: DaqDocument) => new Map([['kit', new Map(d ? [[d._id, d]] : [])]]);
    assert.deepEqual(checkNothingLost(config, snapshot(doc('good', { proc1: ok('t', 'aa') })), ['run_lg23b000_001'], before), []);
    assert.match(checkNothingLost(config, snapshot(doc('good', { proc1: ok('t', 'bb') })), ['run_lg23b000_001'], before)[0].detail, /checksum changed/);
    assert.match(checkNothingLost(config, snapshot(doc('good', { proc1: { attempts: 1 } })), ['run_lg23b000_001'], before)[0].detail, /was ok/);
    assert.match(checkNothingLost(config, snapshot(), ['run_lg23b000_001'], before)[0].detail, /missing on kit/);
  });

  it('input files map to their documents', () => {
    assert.equal(docOfInput('/lyon/raw/lg23b000_005'), 'run_lg23b000_005');
    assert.equal(docOfInput('/lyon/converted/lg23b000_005.txt'), 'run_lg23b000_005');
  });

  it('the schedule is replayed by its seed and deals every fault kind before repeating one', () => {
    const plan = (seed: number) => {
      const rng = random(seed);
      const deck = new FaultDeck(rng, FAULT_KINDS);
      return [1, 2].map(() => planRound(rng, deck, { faults: FAULT_KINDS.length / 2, files: 8, activeMs: 30_000, maxHoldMs: 8000 }));
    };
    assert.deepEqual(plan(42), plan(42));
    assert.notDeepEqual(plan(42), plan(43));
    const kinds = plan(42).flatMap((r) => r.faults.map((f) => f.kind));
    assert.deepEqual([...kinds].sort(), [...FAULT_KINDS].sort());
    for (const round of plan(42))
      assert.equal(
        round.arrivals.reduce((n, a) => n + a.files, 0),
        8,
      );
  });
});
