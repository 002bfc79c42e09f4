import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PouchDB } from '../../server/pouch.js';
import { IndexGroup, type SourceDatabase, viewDefinitions } from '../../server/view-index.js';
import { queryIndex } from '../../server/view-query.js';
import { testFolder } from '../support/folders.js';

describe('server/view-index: an index that fails to commit stays where it was', () => {
  it('a LevelDB batch refused once: the next update applies the same changes, no row and no count lost', async () => {
    const dir = testFolder('mesh-view-index-');
    const db = new PouchDB(join(dir, 'source')) as unknown as SourceDatabase & { bulkDocs(docs: object[]): Promise<unknown>; close(): Promise<void> };
    await db.bulkDocs(Array.from({ length: 20 }, (_, i) => ({ _id: `d${i}`, k: i % 4 })));
    const views = viewDefinitions({ by_k: { map: 'function (doc) { emit(doc.k, 1); }', reduce: '_count' } });
    const group = await IndexGroup.open(join(dir, 'index'), db, views);
    try {
      const store = group.store as unknown as { batch: (ops: unknown[]) => Promise<void> };
      const commit = store.batch.bind(store);
      let refused = 0;
      store.batch = async (ops) => {
        if (refused++ === 0) throw new Error('disk full (injected)');
        return commit(ops);
      };
      await assert.rejects(group.update(), /disk full/);
      assert.equal(group.seq, 0, 'the update seq did not move past changes that were not stored');
      assert.equal(group.totalRows(0), 0);
      await group.update();
      const rows = await queryIndex(group, 0, { reduce: false });
      assert.equal(rows.rows.length, 20, 'every row is there after the retried pass');
      assert.equal(rows.total_rows, 20);
      const counts = await queryIndex(group, 0, { group: true });
      assert.deepEqual(
        counts.rows.map((r) => [r.key, r.value]),
        [
          [0, 5],
          [1, 5],
          [2, 5],
          [3, 5],
        ],
      );
    } finally {
      await group.close();
      await db.close();
    }
  });
});
