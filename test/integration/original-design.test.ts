/**
 * `_design/proc` on the embedded server, as the original scripts' tools query it: `mesh couchapp
 * push` writes it next to `_design/mesh` (once), then the originals' queries over HTTP give the
 * originals' answers on the hand-built documents of test/support/original-docs.ts.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'mocha';
import type { ServerProcess } from '../support/server-process.js';
import { makeMesh, runMesh, serverForSuite, type TestMesh } from '../support/mesh.js';
import { originalDocs } from '../support/original-docs.js';

interface ViewAnswer {
  rows: Array<{ id?: string; key: unknown; value: unknown }>;
}

describe('_design/proc on the embedded server', function () {
  this.timeout(120_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  /** GET under the database, the query string written as the originals' tools write it. */
  async function get<T>(mesh: TestMesh, path: string): Promise<T> {
    const response = await fetch(`${server.url}/${mesh.config.database}/${path}`);
    assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
    return (await response.json()) as T;
  }

  async function push(configFile: string): Promise<string> {
    const result = await runMesh(['--config', configFile, 'couchapp', 'push']);
    assert.equal(result.status, 0, result.stderr);
    return result.stdout;
  }

  it('mesh couchapp push writes _design/mesh and _design/proc, then nothing; a changed pipeline updates both', async () => {
    const mesh = await makeMesh(server.url, { push: false });
    const first = await push(mesh.configFile);
    assert.match(first, /: _design\/mesh updated \(1-/);
    assert.match(first, /: _design\/proc updated \(1-/);
    const second = await push(mesh.configFile);
    assert.match(second, /: _design\/mesh unchanged \(1-/);
    assert.match(second, /: _design\/proc unchanged \(1-/);

    const config = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    config.steps.push({ ...config.steps.at(-1), name: 'proc3', out: join(mesh.dir, 'out', 'proc3', '{run_name}_{file_number}') });
    const changed = join(mesh.dir, 'mesh-4-steps.json');
    await writeFile(changed, JSON.stringify(config));
    const third = await push(changed);
    assert.match(third, /: _design\/mesh updated \(2-/);
    assert.match(third, /: _design\/proc updated \(2-/);
    const proc = await get<{ views: Record<string, unknown> }>(mesh, '_design/proc');
    assert.ok(proc.views.proc3 && proc.views.proc3inprogress, Object.keys(proc.views).join(', '));
  });

  it("answers the originals' queries: step views by run range, status by group level, daqdoc _stats, the filters", async () => {
    const mesh = await makeMesh(server.url, { push: false });
    // Before the design documents: mesh's validate_doc_update would refuse the records with gaps.
    const written = await mesh.db.bulk(originalDocs());
    assert.deepEqual(
      written.filter((row) => row.error),
      [],
    );
    await push(mesh.configFile);

    const proc2 = await get<ViewAnswer>(mesh, '_design/proc/_view/proc2?startkey="lg23b002"&endkey="lh18c005"');
    assert.deepEqual(
      proc2.rows.map((r) => [r.id, r.key, r.value]),
      [
        ['d03', 'lg23b002_007', 1],
        ['d04', 'lg23b002_1234', 1],
        ['d12', 'lh18c004_001', 1],
      ],
    );
    const proc0 = await get<ViewAnswer>(mesh, '_design/proc/_view/proc0');
    assert.deepEqual(
      proc0.rows.map((r) => r.id),
      ['d02', 'd23', 'd24'],
      'd24 waits for its retry of proc0: pending, so the originals see it as not done',
    );
    const proc1 = await get<ViewAnswer>(mesh, '_design/proc/_view/proc1');
    assert.deepEqual(
      proc1.rows.map((r) => r.id),
      ['d05', 'd07'],
    );

    const status = await get<ViewAnswer>(mesh, '_design/proc/_view/status?group_level=1');
    assert.deepEqual(status.rows, [
      { key: ['bad'], value: 1 },
      { key: ['closed'], value: 3 },
      { key: ['good'], value: 9 },
      { key: ['proc0 failed'], value: 1 },
      { key: ['proc0 in progress'], value: 1 },
      { key: ['proc0 queued'], value: 1 },
      { key: ['proc1 failed'], value: 1 },
      { key: ['proc1 in progress'], value: 1 },
      { key: ['proc1 queued'], value: 1 },
      { key: ['proc2 failed'], value: 1 },
      { key: ['proc2 in progress'], value: 1 },
      { key: ['proc2 queued'], value: 1 },
    ]);
    const goodInRun = await get<ViewAnswer>(mesh, '_design/proc/_view/status?startkey=["good","lg23b002"]&endkey=["good","lg23b002\ufff0"]');
    assert.deepEqual(goodInRun.rows, [{ key: null, value: 5 }]);

    const daqdoc = await get<ViewAnswer>(mesh, '_design/proc/_view/daqdoc');
    assert.deepEqual(daqdoc.rows, [{ key: null, value: { sum: 23, count: 23, min: 1, max: 1, sumsqr: 23 } }]);
    const oneRun = await get<ViewAnswer>(mesh, '_design/proc/_view/daqdoc?startkey="lh18c004"&endkey="lh18c004\ufff0"');
    assert.equal((oneRun.rows[0].value as { count: number }).count, 7);

    const rows = async (view: string) => (await get<ViewAnswer>(mesh, `_design/proc/_view/${view}`)).rows.map((r) => [r.key, r.value]);
    assert.deepEqual(await rows('inqueue'), [
      ['lg23b002_009', 'proc1 queued'],
      ['lh18c004_004', 'proc0 queued'],
      ['lh18c004_006', 'proc2 queued'],
    ]);
    assert.deepEqual(await rows('inprogress'), [
      ['lg23b002_010', 'proc1 in progress'],
      ['lh18c004_002', 'proc0 in progress'],
      ['lh18c004_005', 'proc2 in progress'],
    ]);
    assert.deepEqual(await rows('failed'), [
      ['lg23b002_011', 'proc2 failed'],
      ['lh18c004_003', 'proc0 failed'],
      ['lh18c004_007', 'proc1 failed'],
    ]);
    assert.deepEqual(await rows('bad'), [['lg23b002_012', 1]]);
    assert.deepEqual(await rows('proc1inprogress'), [['lg23b002_010', 1]]);
    assert.deepEqual(
      (await rows('raw')).map(([key]) => key),
      ['lg23b001_005', 'lg23b002_004', 'lg23b002_007', 'lg23b002_1234', 'lh18c004_001', 'lh18c005_000', 'lh18c006_003'],
    );
    const statusbyrun = await get<ViewAnswer>(mesh, '_design/proc/_view/statusbyrun?key="lg23b002_1234"');
    assert.deepEqual(
      statusbyrun.rows.map((r) => r.value),
      ['good'],
    );
    const procbyrun = await get<ViewAnswer>(mesh, '_design/proc/_view/procbyrun?startkey=["lh18c006"]&endkey=["lh18c006\ufff0"]');
    assert.deepEqual(
      procbyrun.rows.map((r) => [r.key, r.value]),
      [
        [['lh18c006_001', 'mixed_state'], 'closed'],
        [['lh18c006_002', 'mixed_state'], 'closed'],
        [['lh18c006_003', 'mixed_state'], 'good'],
        [['lh18c006_004', 'proc0'], null],
      ],
    );

    const changes = async (filter: string) =>
      (await get<{ results: Array<{ id: string }> }>(mesh, `_changes?filter=proc/${filter}`)).results.map((r) => r.id).sort();
    assert.deepEqual(await changes('newproc0'), ['d02', 'd20', 'd23', 'd24']);
    assert.deepEqual(await changes('statusgood'), ['d01', 'd03', 'd04', 'd05', 'd06', 'd07', 'd12', 'd19', 'd21', 'd22', 'd25']);
  });
});
