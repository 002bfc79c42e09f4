/**
 * The embedded server's view engine (server/view-index.ts, view-query.ts) keeps `_count` and
 * `_sum` reductions per key instead of reading every row. These tests check that every query
 * answers exactly what a full computation answers: the reference is PouchDB's own map/reduce
 * (which reads and reduces every row), run in this process on a copy of the same documents,
 * while the server is queried over HTTP. Random documents (seed printed), then rounds of
 * updates and deletes; every round compares reduce queries with and without grouping, group
 * levels, key ranges both ways, keys, limit/skip, and the rows of reduce=false.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import nano from 'nano';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const require = createRequire(import.meta.url);

interface LocalDb {
  bulkDocs(docs: object[]): Promise<Array<{ id: string; rev?: string; error?: string }>>;
  query(
    view: string,
    opts: Record<string, unknown>,
  ): Promise<{ rows: Array<{ key: unknown; value: unknown; id?: string }>; total_rows?: number; offset?: number }>;
  destroy(): Promise<void>;
}
const LocalPouch = require('pouchdb') as { defaults(opts: object): new (name: string) => LocalDb };

const SEED = Number(process.env.VIEW_TEST_SEED ?? Date.now() % 1_000_000);

function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const design = {
  _id: '_design/t',
  views: {
    count: { map: 'function (doc) { if (doc.k !== undefined) emit(doc.k, null); }', reduce: '_count' },
    sum: { map: 'function (doc) { if (doc.k !== undefined) emit(doc.k, doc.n); }', reduce: '_sum' },
    multi: { map: 'function (doc) { if (doc.tags) for (var i = 0; i < doc.tags.length; i++) emit(doc.tags[i], i); }', reduce: '_count' },
    floats: { map: 'function (doc) { if (doc.f !== undefined) emit(doc.k, doc.f); }', reduce: '_sum' },
    stats: { map: 'function (doc) { if (typeof doc.n === "number") emit(doc.k, doc.n); }', reduce: '_stats' },
    plain: { map: 'function (doc) { if (doc.k !== undefined) emit(doc.k, { n: doc.n }); }' },
  },
};
const REDUCED = ['count', 'sum', 'multi', 'floats', 'stats'];

describe('embedded server views: per-key reductions answer what a full computation answers', function () {
  this.timeout(600_000);
  const rnd = random(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)];
  const strings = ['a', 'b', 'ab', 'B', '', 'z'];
  const randomKey = (): unknown =>
    pick([
      () => pick(strings),
      () => Math.floor(rnd() * 6) - 2,
      () => pick([null, true, false]),
      () => [pick(strings), Math.floor(rnd() * 3)],
      () => [pick(strings), Math.floor(rnd() * 3), pick(strings)],
      () => [pick(strings)],
      () => ({ a: Math.floor(rnd() * 2) }),
    ])();
  const randomDoc = (id: string): Record<string, unknown> => {
    const doc: Record<string, unknown> = { _id: id, k: randomKey(), n: Math.floor(rnd() * 20) - 5 };
    if (rnd() < 0.7) doc.tags = Array.from({ length: Math.floor(rnd() * 4) }, () => pick(['x', 'y', ['x', 1], 'y']));
    if (rnd() < 0.5) doc.f = Math.round(rnd() * 1000) / 10;
    if (rnd() < 0.1) delete doc.k;
    return doc;
  };

  let couch: ServerProcess;
  let remote: nano.DocumentScope<Record<string, unknown>>;
  let local: LocalDb;
  let localDir: string;
  const docs = new Map<string, Record<string, unknown>>();

  before(async () => {
    console.log(`      seed ${SEED} (VIEW_TEST_SEED=${SEED} replays it)`);
    couch = await startServerProcess();
    const server = nano(couch.url);
    await server.db.create('views');
    remote = server.use('views');
    localDir = await mkdtemp(join(tmpdir(), 'mesh-view-reference-'));
    local = new (LocalPouch.defaults({ prefix: localDir + '/' }))('reference');
    await remote.insert(design as never);
    await local.bulkDocs([design]);
  });
  after(async () => {
    await local?.destroy();
    await rm(localDir, { recursive: true, force: true });
    await couch?.stop();
    await stopAllServerProcesses();
  });

  /** Writes the same documents to both sides (the server keeps its own revisions). */
  async function write(batch: Array<Record<string, unknown>>): Promise<void> {
    const remoteDocs = batch.map((doc) => ({ ...doc, _rev: docs.get(doc._id as string)?._rev }));
    const results = await remote.bulk({ docs: remoteDocs as never[] });
    const localResults = await local.bulkDocs(batch.map((doc) => ({ ...doc, _rev: docs.get(doc._id as string)?._localRev })));
    batch.forEach((doc, i) => {
      assert.ok(results[i].rev && localResults[i].rev, `write of ${String(doc._id)} refused`);
      if (doc._deleted) docs.delete(doc._id as string);
      else docs.set(doc._id as string, { ...doc, _rev: results[i].rev, _localRev: localResults[i].rev });
    });
  }

  /** Query options covering what CouchDB offers for reduce views, with keys taken from the data. */
  async function queries(view: string): Promise<Array<Record<string, unknown>>> {
    const keys = (await local.query(`t/${view}`, { group: true })).rows.map((r) => r.key);
    const some = (): unknown => (keys.length ? pick(keys) : 'a');
    const [lo, hi] = keys.length ? [keys[Math.floor(keys.length / 4)], keys[Math.floor((3 * keys.length) / 4)]] : ['a', 'b'];
    return [
      {},
      { group: true },
      { group_level: 1 },
      { group_level: 2 },
      { startkey: lo, endkey: hi },
      { startkey: lo, endkey: hi, group: true },
      { startkey: lo, endkey: hi, inclusive_end: false, group: true },
      { startkey: hi, endkey: lo, descending: true, group: true },
      { startkey: hi, endkey: lo, descending: true, inclusive_end: false },
      { descending: true, group_level: 1 },
      { startkey: lo },
      { endkey: hi, group: true },
      { key: some() },
      { key: some(), group: true },
      { keys: [some(), some(), 'not-a-key'], group: true },
      { group: true, limit: 3, skip: 2 },
      { group_level: 1, limit: 2 },
      { startkey: ['a'], endkey: ['b', {}], group_level: 1 },
      { reduce: false },
      { reduce: false, startkey: lo, endkey: hi, limit: 7, skip: 3 },
      { reduce: false, descending: true, limit: 5 },
      { reduce: false, key: some() },
    ];
  }

  async function compareAll(round: string): Promise<number> {
    let compared = 0;
    for (const view of [...REDUCED, 'plain']) {
      for (const opts of await queries(view)) {
        if (view === 'plain' && Object.keys(opts).some((k) => k.startsWith('group'))) continue;
        // Without the key (not `reduce: undefined`): nano would send "undefined", which CouchDB refuses (400).
        const { reduce: _reduce, ...withoutReduce } = opts;
        const q: Record<string, unknown> = view === 'plain' ? withoutReduce : opts;
        const label = `${round}: ${view} ${JSON.stringify(q)}`;
        const expected = await local.query(`t/${view}`, { ...q }); // PouchDB adds undefined options to the object it gets
        const actual = (await remote.view('t', view, q as never).catch((error: Error) => {
          throw new Error(`${label}: ${error.message}`);
        })) as unknown as typeof expected;
        assert.deepEqual(actual.rows, expected.rows, label);
        if (q.reduce === false || view === 'plain') {
          assert.equal(actual.total_rows, expected.total_rows, `${label}: total_rows`);
          assert.equal(actual.offset, expected.offset, `${label}: offset`);
        }
        compared++;
      }
    }
    return compared;
  }

  it('after inserts, updates and deletes, over several rounds, every query matches', async () => {
    const ids = Array.from({ length: 600 }, (_, i) => `doc-${String(i).padStart(4, '0')}`);
    await write(ids.map((id) => randomDoc(id)));
    let compared = await compareAll('inserted');
    for (let round = 1; round <= 4; round++) {
      const live = [...docs.keys()];
      const changed = live.filter(() => rnd() < 0.2).map((id) => ({ ...randomDoc(id) }));
      const deleted = live
        .filter(() => rnd() < 0.05)
        .filter((id) => !changed.some((d) => d._id === id))
        .map((id) => ({ _id: id, _deleted: true }));
      const added = Array.from({ length: 40 }, (_, i) => randomDoc(`new-${round}-${i}`));
      await write([...changed, ...deleted, ...added]);
      compared += await compareAll(`round ${round} (${changed.length} updated, ${deleted.length} deleted, ${added.length} added)`);
    }
    assert.ok(compared > 500, `only ${compared} queries compared`);
  });

  it('keeps the index across a server restart, and stale=ok answers without updating', async () => {
    await couch.restart();
    await compareAll('after restart');
    const before = (await remote.view('t', 'count', {})) as unknown as { rows: Array<{ value: number }> };
    await write([randomDoc('after-restart-1'), randomDoc('after-restart-2')].map((d) => ({ ...d, k: 'a' })));
    const stale = (await remote.view('t', 'count', { stale: 'ok' } as never)) as unknown as { rows: Array<{ value: number }> };
    assert.equal(stale.rows[0].value, before.rows[0].value, 'stale=ok must not wait for the index');
    const fresh = (await remote.view('t', 'count', {})) as unknown as { rows: Array<{ value: number }> };
    assert.equal(fresh.rows[0].value, before.rows[0].value + 2);
    await compareAll('after the stale read');
  });

  it('answers query errors as CouchDB does', async () => {
    const errorOf = async (view: string, q: Record<string, unknown>): Promise<number | undefined> => {
      try {
        await remote.view('t', view, q as never);
      } catch (error) {
        return (error as { statusCode?: number }).statusCode;
      }
      return undefined;
    };
    assert.equal(await errorOf('count', { startkey: 'b', endkey: 'a' }), 400);
    assert.equal(await errorOf('count', { include_docs: true }), 400);
    assert.equal(await errorOf('count', { keys: ['a', 'b'] }), 400);
    assert.equal(await errorOf('nothing', {}), 404);
  });
});
