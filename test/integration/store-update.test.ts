/**
 * store/update.ts against a real embedded server over HTTP: each outcome of the one
 * compare-and-set (written, kept, conflict, illegal, gone), and the re-read after a 409.
 */
import { embeddedServersForSuite } from '../support/in-process.js';
import assert from 'node:assert/strict';
import { MeshError } from '../../core/errors.js';
import { Database } from '../../store/database.js';
import { update } from '../../store/update.js';

interface Counter {
  _id: string;
  _rev?: string;
  n: number;
}

describe('store update(): one compare-and-set, every outcome named', function () {
  const suite = embeddedServersForSuite('mesh-update-', ['test']);
  let db: Database;

  before(async () => {
    db = new Database({ url: suite.server('test').url, database: 'update_test' });
    await db.ensure();
  });

  const increment = (current: Counter | undefined) => ({ write: { _id: 'c', n: (current?.n ?? 0) + 1 } });

  it('creates only when asked, and says gone otherwise', async () => {
    assert.deepEqual(await update<Counter>(db, 'missing', increment), { kind: 'gone' });
    assert.equal(await db.get('missing'), undefined, 'nothing written');
    const created = await update<Counter>(db, 'c', increment, { create: true });
    assert.equal(created.kind, 'written');
    assert.equal((await db.get<Counter>('c'))?.n, 1);
  });

  it('a decision on a stale revision with no re-read is a conflict, and nothing is re-applied', async () => {
    const seen = (await db.get<Counter>('c')) as Counter;
    await db.put({ ...seen, n: 10 });
    const result = await update<Counter>(db, 'c', increment, { seen, rereads: 0 });
    assert.equal(result.kind, 'conflict');
    assert.equal((await db.get<Counter>('c'))?.n, 10, "the other writer's value stands");
  });

  it('with re-reads, a 409 decides again on the latest revision', async () => {
    const seen = (await db.get<Counter>('c')) as Counter;
    await db.put({ ...seen, n: 20 });
    const result = await update<Counter>(db, 'c', increment, { seen });
    assert.equal(result.kind, 'written');
    assert.equal((await db.get<Counter>('c'))?.n, 21, 'decided on 20, not on the stale 10');
  });

  it('illegal is not a conflict: the refusal and the revision it was decided on come back', async () => {
    const refusal = new MeshError('ILLEGAL_TRANSITION', 'attempt limit 3 reached');
    const before = (await db.get<Counter>('c')) as Counter;
    const result = await update<Counter>(db, 'c', () => ({ illegal: refusal }));
    assert.equal(result.kind, 'illegal');
    assert.equal(result.kind === 'illegal' && result.error, refusal);
    assert.equal(result.kind === 'illegal' && result.doc._rev, before._rev);
    assert.equal((await db.get<Counter>('c'))?._rev, before._rev, 'nothing written');
  });

  it('keep writes nothing and returns the stored revision', async () => {
    const before = (await db.get<Counter>('c')) as Counter;
    const result = await update<Counter>(db, 'c', () => ({ keep: true }));
    assert.deepEqual(result, { kind: 'written', doc: before, changed: false });
  });
});
