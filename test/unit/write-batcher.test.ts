import assert from 'node:assert/strict';
import { type BulkResult, WriteBatcher } from '../../store/write-batcher.js';

/** A `_bulk_docs` stand-in that answers when told to, recording each request's documents and start time. */
function fakeBulk() {
  const requests: Array<{ ids: string[]; at: number; answer: (results?: BulkResult[]) => void }> = [];
  const send = (docs: object[]) =>
    new Promise<BulkResult[]>((resolve) => {
      const ids = docs.map((d) => (d as { _id: string })._id);
      requests.push({ ids, at: performance.now(), answer: (results) => resolve(results ?? ids.map((id) => ({ id, rev: `2-${id}` }))) });
    });
  return { requests, send };
}

const tick = () => new Promise((r) => setImmediate(r));
const until = async (condition: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 1));
  }
};

describe('store/write-batcher', () => {
  it('writes of one tick share one request; each gets its own revision or refusal', async () => {
    const bulk = fakeBulk();
    const batcher = new WriteBatcher(bulk.send, 200, 2, 0);
    const written = ['a', 'b', 'c'].map((id) => batcher.write({ _id: id }));
    await tick();
    assert.deepEqual(
      bulk.requests.map((r) => r.ids),
      [['a', 'b', 'c']],
    );
    // Out of order, one refused: matched by id.
    bulk.requests[0].answer([
      { id: 'c', rev: '2-c' },
      { id: 'a', error: 'conflict', reason: 'Document update conflict.' },
      { id: 'b', rev: '2-b' },
    ]);
    const [a, b, c] = await Promise.allSettled(written);
    assert.equal(a.status, 'rejected');
    assert.match(String((a as PromiseRejectedResult).reason), /409 conflict/);
    assert.deepEqual(
      [b, c],
      [
        { status: 'fulfilled', value: '2-b' },
        { status: 'fulfilled', value: '2-c' },
      ],
    );
  });

  it('with requests in flight, later writes wait and go together', async () => {
    const bulk = fakeBulk();
    const batcher = new WriteBatcher(bulk.send, 200, 1, 0);
    const first = batcher.write({ _id: 'a' });
    await tick();
    const rest = ['b', 'c', 'd'].map((id) => batcher.write({ _id: id }));
    await tick();
    assert.equal(bulk.requests.length, 1, 'nothing more while the one allowed request is out');
    bulk.requests[0].answer();
    await first;
    await until(() => bulk.requests.length === 2);
    assert.deepEqual(bulk.requests[1].ids, ['b', 'c', 'd']);
    bulk.requests[1].answer();
    assert.deepEqual(await Promise.all(rest), ['2-b', '2-c', '2-d']);
  });

  it('under load, requests start at least minGapMs apart; after a quiet spell a write goes at once', async () => {
    const gap = 40;
    const bulk = fakeBulk();
    const batcher = new WriteBatcher(bulk.send, 200, 2, gap);
    const t0 = performance.now();
    void batcher.write({ _id: 'a' });
    await tick();
    assert.equal(bulk.requests.length, 1, 'the first write is sent without waiting');
    assert.ok(bulk.requests[0].at - t0 < gap / 2);
    bulk.requests[0].answer();
    // Two more writes right after: a slot is free, but the gap holds them, and they share the request.
    void batcher.write({ _id: 'b' });
    await tick();
    void batcher.write({ _id: 'c' });
    await tick();
    assert.equal(bulk.requests.length, 1, 'held by the gap');
    await until(() => bulk.requests.length === 2);
    assert.deepEqual(bulk.requests[1].ids, ['b', 'c']);
    assert.ok(bulk.requests[1].at - bulk.requests[0].at >= gap - 2, `${bulk.requests[1].at - bulk.requests[0].at} ms apart`);
    bulk.requests[1].answer();
    await new Promise((r) => setTimeout(r, gap + 10));
    const quiet = performance.now();
    void batcher.write({ _id: 'd' });
    await tick();
    assert.equal(bulk.requests.length, 3);
    assert.ok(bulk.requests[2].at - quiet < gap / 2, 'no wait after a quiet spell');
    bulk.requests[2].answer();
  });

  it('a full batch does not wait for the gap; a failed request rejects its writes only', async () => {
    const bulk = fakeBulk();
    const batcher = new WriteBatcher(bulk.send, 2, 2, 10_000);
    void batcher.write({ _id: 'a' });
    await tick();
    const b = batcher.write({ _id: 'b' });
    const c = batcher.write({ _id: 'c' });
    await tick();
    assert.deepEqual(
      bulk.requests.map((r) => r.ids),
      [['a'], ['b', 'c']],
      'two queued writes fill a batch of 2: sent at once',
    );
    const failing = new WriteBatcher(() => Promise.reject(new Error('server down')), 200, 2, 0);
    await assert.rejects(failing.write({ _id: 'x' }), /server down/);
    bulk.requests[1].answer();
    assert.deepEqual(await Promise.all([b, c]), ['2-b', '2-c']);
  });
});
