/**
 * Conformance: `_changes` as the agents follow it — longpoll with `filter=_selector` (POST body),
 * `include_docs`, an opaque `since` handed back as it came (never parsed or computed: CouchDB's
 * sequences are strings and, with several shards, not in write order), `since=now`, `timeout`;
 * and 400 for a `since` or `feed` that is malformed.
 */
import assert from 'node:assert/strict';
import { Scratch, dbPath, expectError, expectStatus, releaseTarget, request } from './target.js';

interface Change {
  id: string;
  seq: unknown;
  changes: Array<{ rev: string }>;
  deleted?: boolean;
  doc?: Record<string, unknown>;
}
interface ChangesAnswer {
  results: Change[];
  last_seq: unknown;
}

/** A sequence as the project sends it back: `String(seq)` in the query (store/http.ts). */
const since = (seq: unknown): string => encodeURIComponent(String(seq));

describe('conformance: _changes', function () {
  const scratch = new Scratch('changes');
  let db: string;

  before(async () => {
    db = await scratch.db('main');
  });
  after(() => scratch.cleanUp());
  after(releaseTarget);

  const longpoll = (from: unknown, timeoutMs: number, selector: unknown = { kind: 'job' }) =>
    request<ChangesAnswer>(dbPath(db, `_changes?feed=longpoll&filter=_selector&include_docs=true&since=${since(from)}&timeout=${timeoutMs}&limit=100`), {
      method: 'POST',
      body: { selector },
      timeoutMs: timeoutMs + 15_000,
    });

  it('a normal feed lists each document once with its winning rev; last_seq is the checkpoint to resume from', async () => {
    const first = await request<Array<{ rev: string }>>(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: {
        docs: [
          { _id: 'n1', kind: 'job' },
          { _id: 'n2', kind: 'log' },
        ],
      },
    });
    expectStatus(first, 201, 'documents');
    await request(dbPath(db, 'n1'), { method: 'PUT', body: { _rev: first.body[0].rev, kind: 'job', v: 2 } });
    const all = await request<ChangesAnswer>(dbPath(db, '_changes'));
    expectStatus(all, 200, '_changes');
    assert.deepEqual(all.body.results.map((c) => c.id).sort(), ['n1', 'n2']);
    const n1 = all.body.results.find((c) => c.id === 'n1');
    assert.match(n1?.changes[0].rev ?? '', /^2-/);
    assert.ok(all.body.last_seq !== undefined && all.body.last_seq !== null, 'last_seq');
    const resumed = await request<ChangesAnswer>(dbPath(db, `_changes?since=${since(all.body.last_seq)}`));
    expectStatus(resumed, 200, '_changes from last_seq');
    assert.deepEqual(resumed.body.results, []);
  });

  it('longpoll with filter=_selector from an opaque since answers only the matching changes, with their documents', async () => {
    const checkpoint = (await request<ChangesAnswer>(dbPath(db, '_changes'))).body.last_seq;
    const bulk = await request(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: {
        docs: [
          { _id: 'after-job', kind: 'job', n: 1 },
          { _id: 'after-log', kind: 'log' },
        ],
      },
    });
    expectStatus(bulk, 201, 'documents');
    const answer = await longpoll(checkpoint, 5000);
    expectStatus(answer, 200, 'longpoll');
    assert.deepEqual(
      answer.body.results.map((c) => c.id),
      ['after-job'],
    );
    assert.equal(answer.body.results[0].doc?.kind, 'job');
    assert.equal(answer.body.results[0].doc?.n, 1);
  });

  it('longpoll waits for the next matching change (non-matching ones do not end it) and answers empty results with a last_seq on timeout', async () => {
    const checkpoint = (await request<ChangesAnswer>(dbPath(db, '_changes'))).body.last_seq;
    const started = Date.now();
    const empty = await longpoll(checkpoint, 400);
    expectStatus(empty, 200, 'longpoll timeout');
    assert.deepEqual(empty.body.results, []);
    assert.ok(empty.body.last_seq !== undefined, 'last_seq on timeout');
    assert.ok(Date.now() - started >= 300, `answered after ${Date.now() - started} ms, before its timeout`);
    const waiting = longpoll(checkpoint, 20_000, { kind: 'wake' });
    await new Promise((r) => setTimeout(r, 200));
    expectStatus(await request(dbPath(db, 'noise'), { method: 'PUT', body: { kind: 'log' } }), 201, 'a change that does not match');
    expectStatus(await request(dbPath(db, 'wake-up'), { method: 'PUT', body: { kind: 'wake' } }), 201, 'a matching change');
    const got = await waiting;
    expectStatus(got, 200, 'longpoll woken');
    assert.deepEqual(
      got.body.results.map((c) => c.id),
      ['wake-up'],
    );
    // Resuming from that answer's last_seq does not repeat it.
    const after = await request<ChangesAnswer>(dbPath(db, `_changes?filter=_selector&since=${since(got.body.last_seq)}`), {
      method: 'POST',
      body: { selector: { kind: 'wake' } },
    });
    assert.deepEqual(after.body.results, []);
  });

  it('since=now skips the past', async () => {
    const now = await request<ChangesAnswer>(dbPath(db, '_changes?since=now'));
    expectStatus(now, 200, 'since=now');
    assert.deepEqual(now.body.results, []);
    const waiting = request<ChangesAnswer>(dbPath(db, '_changes?feed=longpoll&since=now&timeout=20000'), { timeoutMs: 35_000 });
    await new Promise((r) => setTimeout(r, 200));
    await request(dbPath(db, 'fresh'), { method: 'PUT', body: {} });
    assert.deepEqual(
      (await waiting).body.results.map((c) => c.id),
      ['fresh'],
    );
  });

  it('a deleted document appears with deleted: true', async () => {
    const put = await request<{ rev: string }>(dbPath(db, 'gone'), { method: 'PUT', body: { kind: 'gone' } });
    const checkpoint = (await request<ChangesAnswer>(dbPath(db, '_changes'))).body.last_seq;
    await request(dbPath(db, `gone?rev=${put.body.rev}`), { method: 'DELETE' });
    const answer = await request<ChangesAnswer>(dbPath(db, `_changes?since=${since(checkpoint)}`));
    assert.deepEqual(
      answer.body.results.map((c) => [c.id, c.deleted]),
      [['gone', true]],
    );
  });

  it('400 bad_request for a malformed since, an unknown feed, and _selector without a selector', async () => {
    expectError(
      await request(dbPath(db, '_changes?since=not*a*sequence')),
      400,
      'bad_request',
      "Malformed sequence supplied in 'since' parameter.",
      'since=not*a*sequence',
    );
    expectError(
      await request(dbPath(db, '_changes?feed=longpoll&timeout=100&since=%7Bbroken')),
      400,
      'bad_request',
      "Malformed sequence supplied in 'since' parameter.",
      'longpoll since={broken',
    );
    expectError(await request(dbPath(db, '_changes?feed=sometimes')), 400, 'bad_request', undefined, 'feed=sometimes');
    expectError(
      await request(dbPath(db, '_changes?filter=_selector'), { method: 'POST', body: {} }),
      400,
      'bad_request',
      undefined,
      '_selector without selector',
    );
  });
});
