/**
 * The reprocess plan and run (coordinator/reprocess.ts) against an embedded server in this
 * process, over HTTP: counts per version and run from the by_version view, paging past the
 * documents it must leave behind (a later step in progress), and a second run finding nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { MeshConfig } from '../../config/types.js';
import { type DaqDocument, type StepRecord } from '../../core/document.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { planReprocess, runReprocess } from '../../coordinator/reprocess.js';
import { historyTo } from '../../core/provenance.js';
import { embeddedServersForSuite } from '../support/in-process.js';
import { makeMesh } from '../support/mesh.js';

const NOW = new Date('2026-11-27T12:00:00.000Z');
const LEASE = '2026-11-27T13:00:00.000Z';

/** A file of `run` through the steps named, proc1 made by `version`; `running` leaves proc2 in progress. */
function fileDoc(config: MeshConfig, run: string, n: number, version: string | undefined, running = false): DaqDocument {
  let doc: DaqDocument = {
    _id: `run_${run}_${String(n).padStart(3, '0')}`,
    type: 'daqdocument',
    run_name: run,
    file_number: n,
    file: `/daq/${run}_${n}`,
    size_in_bytes: 1000 + n,
    date_closed: NOW.toISOString(),
    status: 'closed',
    history: historyTo('closed', []),
  };
  const apply = (event: MeshEvent) => {
    const result = transition(doc, event, NOW, config);
    if (!result.ok) throw result.error;
    doc = result.doc;
  };
  for (const step of ['proc0', 'proc1', 'proc2']) {
    apply({ type: 'claim', step, mode: 'run', site: 'alpha', agent: 'a', host: 'h', lease_until: LEASE, ...(step === 'proc1' && version ? { version } : {}) });
    if (step === 'proc2' && running) return doc;
    apply({ type: 'succeed', step, agent: 'a', result: { exit_code: 0, duration_s: 1, file: `/out/${step}/${n}`, file_size: 10 * (n + 1) } });
  }
  return doc;
}

describe('reprocess in process: counts from by_version, pages past what it leaves behind', function () {
  this.timeout(60_000);
  const suite = embeddedServersForSuite('reprocess-', ['alpha']);

  it('counts per version and run, reprocesses page by page, leaves a document with a later step in progress, and finds nothing the second time', async () => {
    const mesh = await makeMesh(suite.server('alpha').url);
    const config = { ...mesh.config, steps: mesh.config.steps.map((s) => (s.name === 'proc1' ? { ...s, version: '2.0' } : s)) };
    const docs = [
      ...[0, 1, 2, 3, 4].map((n) => fileDoc(config, 'lg23b002', n, '1.9', n === 2)),
      fileDoc(config, 'lg23b002', 5, undefined),
      fileDoc(config, 'lg23b003', 0, '1.9'),
      fileDoc(config, 'lg23b004', 0, '2.0'),
    ];
    for (const doc of docs) await mesh.db.put(doc);

    const all = await planReprocess(config, mesh.db, { step: 'proc1' });
    // Versions in the view's order: null (no version) first. proc1's input is proc0's output (10 × (n + 1) bytes).
    assert.deepEqual(
      all.versions.map((v) => [v.version, v.documents, v.bytes]),
      [
        [null, 1, 60],
        ['1.9', 6, 10 + 20 + 30 + 40 + 50 + 10],
      ],
    );
    const one = await planReprocess(config, mesh.db, { step: 'proc1', runs: { from: 'lg23b003', to: 'lg23b004' } });
    assert.deepEqual([one.documents, one.sample.map((s) => s.doc)], [1, ['run_lg23b003_000']], 'lg23b004 is at 2.0 already');
    const below = await planReprocess(config, mesh.db, { step: 'proc1', belowVersion: '1.9' });
    assert.deepEqual(
      below.versions.map((v) => v.version),
      [null],
    );

    const plan = await planReprocess(config, mesh.db, { step: 'proc1', runs: { from: 'lg23b002', to: 'lg23b002' } });
    assert.equal(plan.documents, 6);
    const progress: number[] = [];
    const summary = await runReprocess(config, mesh.db, plan, {
      why: 'proc1 2.0',
      by: 'operator/test',
      now: () => NOW,
      pageSize: 2,
      onProgress: (p) => progress.push(p.done),
    });
    assert.equal(summary.reprocessed, 5);
    assert.equal(summary.bytes, 10 + 20 + 40 + 50 + 60);
    assert.deepEqual(
      summary.refused.map((r) => r.doc),
      ['run_lg23b002_002'],
    );
    assert.match(summary.refused[0].reason, /a step is queued or in progress/);
    assert.deepEqual(summary.conflicts, []);
    assert.deepEqual(progress, [1, 2, 3, 4, 5, 6]);
    for (const doc of docs.filter((d) => d.run_name === 'lg23b002' && d._id !== 'run_lg23b002_002')) {
      const stored = (await mesh.db.get<DaqDocument>(doc._id)) as DaqDocument;
      assert.equal(stored.status, 'good');
      assert.equal(stored.proc1, undefined);
      assert.deepEqual(
        stored.superseded?.map((s) => [s.step, s.record]),
        [
          ['proc1', doc.proc1],
          ['proc2', doc.proc2],
        ],
      );
    }
    assert.equal(((await mesh.db.get<DaqDocument>('run_lg23b003_000'))?.proc1 as StepRecord).version, '1.9', 'another run is not touched');

    const again = await planReprocess(config, mesh.db, { step: 'proc1', runs: { from: 'lg23b002', to: 'lg23b002' } });
    assert.deepEqual(
      again.sample.map((s) => s.doc),
      ['run_lg23b002_002'],
      'only the document left behind is still older',
    );
    const second = await runReprocess(config, mesh.db, again, { why: 'proc1 2.0', by: 'operator/test', now: () => NOW, pageSize: 2 });
    assert.deepEqual([second.reprocessed, second.refused.length], [0, 1]);
  });
});
