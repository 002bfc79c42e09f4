import assert from 'node:assert/strict';
import { parseMeshConfig } from '../../config/load.js';
import { stepsOwnedBy } from '../../store/assignment.js';
import { mergeLeaves, rankLeaves } from '../../coordinator/audit.js';
import { plannedReplications } from '../../coordinator/replication.js';
import type { DaqDocument } from '../../core/document.js';
import { historyTo } from '../../core/provenance.js';

const config = parseMeshConfig(
  {
    sites: {
      modane: { server: 'http://127.0.0.1:5984', reachable: false, long_running: true, may_run: ['proc0'] },
      kit: { server: 'http://127.0.0.1:5985', reachable: true, long_running: true, may_run: [] },
      lyon: { server: 'http://127.0.0.1:5985', reachable: true, long_running: false, credentials_of: 'kit', may_run: ['proc1', 'proc2'] },
    },
    ingest: { site: 'modane' },
    steps: [
      { name: 'proc0', site: 'modane', run: ['true'], out: '/o/{run_name}_{file_number}' },
      { name: 'proc1', site: 'lyon', run: ['true'], out: '/o/{run_name}_{file_number}' },
      { name: 'proc2', site: 'lyon', run: ['true'], out: '/o/{run_name}_{file_number}' },
    ],
  },
  'test',
);
const steps = config.steps.map((s) => s.name);

function leaf(rev: string, status: string, records: Record<string, object>): DaqDocument {
  return {
    _id: 'run_x_000',
    _rev: rev,
    type: 'daqdocument',
    run_name: 'x',
    file_number: 0,
    file: '/d/x',
    size_in_bytes: 0,
    date_closed: '',
    status,
    history: historyTo(status, ['proc0', 'proc1', 'proc2']),
    ...records,
  };
}

describe('coordinator, pure parts', () => {
  it('places both replication jobs of an unreachable site on its own server, one pair per distinct server', () => {
    const jobs = plannedReplications(config);
    assert.deepEqual(jobs.map((j) => `${j.from}>${j.to}@${j.on}`).sort(), ['kit>modane@modane', 'modane>kit@modane']);
    assert.ok(jobs.every((j) => j.id.startsWith('mesh-datadb-')));
  });

  it("picks the same winner whatever the order of the leaves, and keeps the loser's run", () => {
    const a = leaf('3-aaa', 'good', {
      proc0: { ok: true, attempts: 1, site: 'modane', agent: 'm1', started: 't1' },
      proc1: { ok: true, attempts: 1, site: 'lyon', agent: 'l1', started: 't2' },
    });
    const b = leaf('3-bbb', 'good', {
      proc0: { ok: true, attempts: 1, site: 'modane', agent: 'm1', started: 't1' },
      proc1: { ok: true, attempts: 1, site: 'kit', agent: 'k1', started: 't3' },
    });
    const c = leaf('2-ccc', 'proc1 in progress', {
      proc0: { ok: true, attempts: 1, site: 'modane', agent: 'm1', started: 't1' },
      proc1: { attempts: 1, site: 'lyon', agent: 'l9', lease_until: 'x' },
    });
    const orders = [
      [a, b, c],
      [c, b, a],
      [b, c, a],
    ];
    const winners = orders.map((o) => rankLeaves(o, steps)[0]._rev);
    assert.deepEqual(new Set(winners), new Set(['3-bbb']), 'more ok records first, then the revision order');
    const [winner, ...losers] = rankLeaves([a, b, c], steps);
    const merged = mergeLeaves(winner, losers, steps);
    const runs = (merged.duplicates as Array<{ step: string; agent: string }>).map((d) => `${d.step}:${d.agent}`).sort();
    assert.deepEqual(runs, ['proc1:l1', 'proc1:l9'], 'the runs the winner does not have, once each');
    assert.equal(merged._rev, '3-bbb');
    assert.deepEqual(mergeLeaves(merged, losers, steps).duplicates, merged.duplicates, 'merging again adds nothing');
  });

  it('never resolves a document out of bad, and never picks a revision that breaks the document rules', () => {
    const done = leaf('5-aaa', 'good', {
      proc0: { ok: true, attempts: 1, site: 'modane', agent: 'm1', started: 't1' },
      proc1: { ok: true, attempts: 1, site: 'lyon', agent: 'l1', started: 't2' },
    });
    const bad = leaf('2-bbb', 'bad', { proc0: { ok: true, attempts: 1, site: 'modane', agent: 'm1', started: 't1' } });
    for (const order of [
      [done, bad],
      [bad, done],
    ])
      assert.equal(rankLeaves(order, steps)[0]._rev, '2-bbb', 'bad is terminal: the bad leaf wins');
    const forged = {
      ...leaf('9-fff', 'good', { proc0: { ok: true, attempts: 1 }, proc1: { ok: true, attempts: 1 }, proc2: { ok: true, attempts: 1 } }),
      history: [],
    };
    const retyped = {
      ...leaf('9-eee', 'good', { proc0: { ok: true, attempts: 1 }, proc1: { ok: true, attempts: 1 }, proc2: { ok: true, attempts: 1 } }),
      type: 'other',
    };
    for (const order of [
      [forged, retyped, done],
      [done, retyped, forged],
    ])
      assert.equal(rankLeaves(order, steps, 'daqdocument')[0]._rev, '5-aaa', 'a leaf without a history from its creation, or of another type, never wins');
  });

  it('gives each site the steps the assignment names, never one outside its may_run', () => {
    assert.deepEqual(
      stepsOwnedBy('lyon', undefined, config).map((s) => s.name),
      ['proc1', 'proc2'],
    );
    assert.deepEqual(
      stepsOwnedBy('modane', { steps: { proc0: 'modane', proc1: 'modane' } }, config).map((s) => s.name),
      ['proc0'],
      'modane may not run proc1',
    );
    assert.deepEqual(
      stepsOwnedBy('lyon', { steps: { proc1: 'lyon', proc2: 'kit' } }, config).map((s) => s.name),
      ['proc1'],
    );
    assert.deepEqual(
      stepsOwnedBy('kit', { steps: { proc2: 'kit' } }, config).map((s) => s.name),
      ['proc2'],
      'an empty may_run allows any step',
    );
  });
});
