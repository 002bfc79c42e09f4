/**
 * Conformance: documents and revisions, 409s, `_bulk_docs` (ids, per-document errors,
 * `new_edits=false`), conflicts as the audit reads them, `_all_docs`, `_local` documents.
 * What CouchDB 3.5 answers (chttpd_db.erl, couch_doc.erl) and CouchMesh relies on.
 */
import assert from 'node:assert/strict';
import { Scratch, dbPath, expectError, expectStatus, releaseTarget, request } from './target.js';

const REV = /^\d+-[0-9a-f]{32}$/;
const A = '1-' + 'a'.repeat(32);
const B = '1-' + 'b'.repeat(32);

interface Written {
  ok?: boolean;
  id: string;
  rev?: string;
  error?: string;
  reason?: string;
}

describe('conformance: documents and revisions', function () {
  const scratch = new Scratch('docs');
  let db: string;

  before(async () => {
    db = await scratch.db('main');
  });
  after(() => scratch.cleanUp());
  after(releaseTarget);

  it('PUT creates (201, rev 1-…), a stale or missing _rev is 409 conflict, DELETE leaves a 404 "deleted"', async () => {
    const created = await request<Written>(dbPath(db, 'd1'), { method: 'PUT', body: { n: 1 } });
    expectStatus(created, 201, 'PUT new document');
    assert.equal(created.body.ok, true);
    assert.equal(created.body.id, 'd1');
    assert.match(created.body.rev ?? '', /^1-[0-9a-f]{32}$/);
    const updated = await request<Written>(dbPath(db, 'd1'), { method: 'PUT', body: { _rev: created.body.rev, n: 2 } });
    expectStatus(updated, 201, 'PUT with the current _rev');
    assert.match(updated.body.rev ?? '', /^2-[0-9a-f]{32}$/);
    const conflict = { error: 'conflict', reason: 'Document update conflict.' };
    expectError(
      await request(dbPath(db, 'd1'), { method: 'PUT', body: { _rev: created.body.rev, n: 3 } }),
      409,
      conflict.error,
      conflict.reason,
      'PUT with a stale _rev',
    );
    expectError(
      await request(dbPath(db, 'd1'), { method: 'PUT', body: { n: 3 } }),
      409,
      conflict.error,
      conflict.reason,
      'PUT without _rev over an existing document',
    );
    expectError(await request(dbPath(db, `d1?rev=${created.body.rev}`), { method: 'DELETE' }), 409, conflict.error, conflict.reason, 'DELETE with a stale rev');
    const read = await request<{ _id: string; _rev: string; n: number }>(dbPath(db, 'd1'));
    expectStatus(read, 200, 'GET');
    assert.deepEqual(read.body, { _id: 'd1', _rev: updated.body.rev, n: 2 });
    const deleted = await request<Written>(dbPath(db, `d1?rev=${updated.body.rev}`), { method: 'DELETE' });
    expectStatus(deleted, 200, 'DELETE with the current rev');
    assert.match(deleted.body.rev ?? '', /^3-/);
    expectError(await request(dbPath(db, 'd1')), 404, 'not_found', 'deleted', 'GET a deleted document');
    expectError(await request(dbPath(db, 'never-written')), 404, 'not_found', 'missing', 'GET a missing document');
    // A deleted document is written again without a revision: a new edit on top of the tombstone.
    const again = await request<Written>(dbPath(db, 'd1'), { method: 'PUT', body: { n: 4 } });
    expectStatus(again, 201, 'PUT over a deleted document without _rev');
    assert.match(again.body.rev ?? '', /^4-/);
  });

  it('POST /db without _id assigns a 32-hex-digit id', async () => {
    const posted = await request<Written>(dbPath(db), { method: 'POST', body: { kind: 'posted' } });
    expectStatus(posted, 201, 'POST a document without _id');
    assert.match(posted.body.id, /^[0-9a-f]{32}$/);
    expectStatus(await request(dbPath(db, posted.body.id)), 200, 'GET the posted document');
  });

  it('_bulk_docs answers 201 with one row per document in request order: ok, conflict, new ids for documents without _id', async () => {
    const first = await request<Written[]>(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: {
        docs: [
          { _id: 'b1', v: 1 },
          { _id: 'b2', v: 2 },
        ],
      },
    });
    expectStatus(first, 201, '_bulk_docs');
    const [b1] = first.body;
    const answer = await request<Written[]>(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: { docs: [{ _id: 'b1', _rev: b1.rev, v: 10 }, { _id: 'b2', v: 20 }, { v: 'no id' }, { _id: 'b3', v: 3 }, { _id: 'b1', _rev: b1.rev, v: 11 }] },
    });
    expectStatus(answer, 201, '_bulk_docs with conflicts');
    const rows = answer.body;
    assert.equal(rows.length, 5);
    assert.deepEqual([rows[0].id, rows[0].ok], ['b1', true]);
    assert.deepEqual([rows[1].id, rows[1].error, rows[1].reason], ['b2', 'conflict', 'Document update conflict.']);
    assert.equal(rows[2].ok, true);
    assert.match(rows[2].id, /^[0-9a-f]{32}$/, 'a document without _id gets a new id');
    assert.match(rows[2].rev ?? '', /^1-/);
    assert.deepEqual([rows[3].id, rows[3].ok], ['b3', true]);
    assert.deepEqual([rows[4].id, rows[4].error], ['b1', 'conflict'], 'the second edit of the same revision in one request');
    const stored = await request<{ v: string }>(dbPath(db, rows[2].id));
    expectStatus(stored, 200, 'the document stored under its new id');
    assert.equal(stored.body.v, 'no id');
    const ids = await request<Written[]>(dbPath(db, '_bulk_docs'), { method: 'POST', body: { docs: [{}, {}, {}] } });
    expectStatus(ids, 201, '_bulk_docs of empty documents');
    assert.equal(new Set(ids.body.map((r) => r.id)).size, 3, 'distinct new ids');
    assert.ok(
      ids.body.every((r) => r.ok === true && /^[0-9a-f]{32}$/.test(r.id)),
      JSON.stringify(ids.body),
    );
    // An empty id is not "no id": CouchDB refuses the whole request (measured on 3.5).
    expectError(
      await request(dbPath(db, '_bulk_docs'), { method: 'POST', body: { docs: [{ _id: 'fine' }, { _id: '' }] } }),
      400,
      'illegal_docid',
      'Document id must not be empty',
      '_bulk_docs with an empty _id',
    );
    expectStatus(await request(dbPath(db, 'fine')), 404, 'nothing of the refused request was written');
  });

  it('_bulk_docs refuses a body that is not {docs: [objects]} with 400 bad_request', async () => {
    expectError(await request(dbPath(db, '_bulk_docs'), { method: 'POST', body: {} }), 400, 'bad_request', undefined, 'no docs');
    expectError(await request(dbPath(db, '_bulk_docs'), { method: 'POST', body: { docs: 5 } }), 400, 'bad_request', undefined, 'docs not an array');
    expectError(await request(dbPath(db, '_bulk_docs'), { method: 'POST', body: '{not json' }), 400, 'bad_request', undefined, 'not JSON');
  });

  it('new_edits=false stores the given revisions as branches; the winner is the deeper, then the higher rev; the loser is listed in _conflicts and open_revs', async () => {
    const replicated = await request<Written[]>(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: {
        new_edits: false,
        docs: [
          { _id: 'c', _rev: A, v: 'a' },
          { _id: 'c', _rev: B, v: 'b' },
        ],
      },
    });
    expectStatus(replicated, 201, '_bulk_docs new_edits=false');
    assert.ok(Array.isArray(replicated.body) && replicated.body.every((r) => r.error === undefined), JSON.stringify(replicated.body));
    // Writing the same revisions again changes nothing and is no error.
    const repeated = await request<Written[]>(dbPath(db, '_bulk_docs'), { method: 'POST', body: { new_edits: false, docs: [{ _id: 'c', _rev: A, v: 'a' }] } });
    expectStatus(repeated, 201, 'the same revision again');
    const doc = await request<{ _rev: string; v: string; _conflicts?: string[] }>(dbPath(db, 'c?conflicts=true'));
    expectStatus(doc, 200, 'GET ?conflicts=true');
    assert.equal(doc.body._rev, B);
    assert.equal(doc.body.v, 'b');
    assert.deepEqual(doc.body._conflicts, [A]);
    const leaves = await request<Array<{ ok?: { _rev: string; v: string } }>>(dbPath(db, 'c?open_revs=all'), { headers: { accept: 'application/json' } });
    expectStatus(leaves, 200, 'GET ?open_revs=all (Accept: application/json)');
    assert.deepEqual(leaves.body.map((l) => l.ok?._rev).sort(), [A, B]);
    // A deeper branch wins over a higher hash.
    const deeper = await request(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: { new_edits: false, docs: [{ _id: 'c', _rev: '2-' + '1'.repeat(32), _revisions: { start: 2, ids: ['1'.repeat(32), 'a'.repeat(32)] }, v: 'a2' }] },
    });
    expectStatus(deeper, 201, 'extending the lower branch');
    const now = await request<{ _rev: string; _conflicts?: string[] }>(dbPath(db, 'c?conflicts=true'));
    assert.equal(now.body._rev, '2-' + '1'.repeat(32));
    assert.deepEqual(now.body._conflicts, [B]);
    // Resolving as the audit does: delete the losing leaf; the document is whole again.
    expectStatus(await request(dbPath(db, `c?rev=${B}`), { method: 'DELETE' }), 200, 'DELETE the losing leaf');
    const resolved = await request<{ _rev: string; _conflicts?: string[] }>(dbPath(db, 'c?conflicts=true'));
    assert.equal(resolved.body._conflicts, undefined);
    const info = await request<{ _revs_info?: Array<{ rev: string; status: string }> }>(dbPath(db, 'c?revs_info=true&conflicts=true'));
    expectStatus(info, 200, 'GET ?revs_info=true');
    assert.equal(info.body._revs_info?.[0]?.rev, resolved.body._rev);
    assert.equal(info.body._revs_info?.[0]?.status, 'available');
  });

  it('_all_docs: keys (POST) with missing rows, include_docs, raw id ranges as the code spells them', async () => {
    await request(dbPath(db, '_bulk_docs'), {
      method: 'POST',
      body: {
        docs: [
          { _id: 'run_lg23b002_000' },
          { _id: 'run_lg23b002_001' },
          { _id: 'run_lg23b003_000' },
          { _id: 'mesh-agent:lyon:a1' },
          { _id: 'mesh-agent:modane:m1' },
          { _id: 'mesh-assignment' },
        ],
      },
    });
    const keyed = await request<{ rows: Array<{ key: string; id?: string; error?: string; doc?: { _id: string } }> }>(
      dbPath(db, '_all_docs?include_docs=true'),
      { method: 'POST', body: { keys: ['run_lg23b003_000', 'nope', 'run_lg23b002_000'] } },
    );
    expectStatus(keyed, 200, '_all_docs with keys');
    assert.deepEqual(
      keyed.body.rows.map((r) => [r.key, r.doc?._id ?? r.error]),
      [
        ['run_lg23b003_000', 'run_lg23b003_000'],
        ['nope', 'not_found'],
        ['run_lg23b002_000', 'run_lg23b002_000'],
      ],
    );
    const range = (start: string, end: string) =>
      request<{ rows: Array<{ id: string }> }>(
        dbPath(db, `_all_docs?startkey=${encodeURIComponent(JSON.stringify(start))}&endkey=${encodeURIComponent(JSON.stringify(end))}`),
      );
    assert.deepEqual(
      (await range('mesh-agent:', 'mesh-agent:\ufff0')).body.rows.map((r) => r.id),
      ['mesh-agent:lyon:a1', 'mesh-agent:modane:m1'],
    );
    assert.deepEqual(
      (await range('run_', 'run_\ufff0')).body.rows.map((r) => r.id),
      ['run_lg23b002_000', 'run_lg23b002_001', 'run_lg23b003_000'],
    );
    const page = await request<{ rows: Array<{ id: string }> }>(
      dbPath(db, `_all_docs?limit=2&startkey=${encodeURIComponent(JSON.stringify('run_lg23b002_000'))}`),
    );
    assert.deepEqual(
      page.body.rows.map((r) => r.id),
      ['run_lg23b002_000', 'run_lg23b002_001'],
    );
    expectError(
      await request(dbPath(db, '_all_docs'), { method: 'POST', body: { keys: 'run_lg23b002_000' } }),
      400,
      'bad_request',
      undefined,
      '_all_docs keys not an array',
    );
  });

  it('_local documents: revisions 0-N, never in _all_docs or _changes, deletable; a stale rev is 409 or taken', async () => {
    const local = await scratch.db('local');
    const put = await request<Written>(dbPath(local, '_local/checkpoint'), { method: 'PUT', body: { last_seq: 'x' } });
    expectStatus(put, 201, 'PUT _local');
    assert.equal(put.body.id, '_local/checkpoint');
    assert.equal(put.body.rev, '0-1');
    const second = await request<Written>(dbPath(local, '_local/checkpoint'), { method: 'PUT', body: { _rev: '0-1', last_seq: 'y' } });
    expectStatus(second, 201, 'PUT _local with its rev');
    assert.equal(second.body.rev, '0-2');
    const got = await request<{ _id: string; _rev: string; last_seq: string }>(dbPath(local, '_local/checkpoint'));
    expectStatus(got, 200, 'GET _local');
    assert.deepEqual(got.body, { _id: '_local/checkpoint', _rev: '0-2', last_seq: 'y' });
    // A stale rev: PouchDB answers 409, CouchDB does not compare _local revisions and takes the
    // write. agents/discovery.ts tolerates both (its checkpoint is re-read after a 409).
    const stale = await request<Written>(dbPath(local, '_local/checkpoint'), { method: 'PUT', body: { _rev: '0-1', last_seq: 'z' } });
    assert.ok(stale.status === 201 || stale.status === 409, `PUT _local with a stale rev: ${stale.status}`);
    const current = await request<{ _rev: string; last_seq: string }>(dbPath(local, '_local/checkpoint'));
    assert.equal(current.body.last_seq, stale.status === 201 ? 'z' : 'y');
    await request(dbPath(local, 'plain'), { method: 'PUT', body: {} });
    const all = await request<{ rows: Array<{ id: string }> }>(dbPath(local, '_all_docs'));
    assert.deepEqual(
      all.body.rows.map((r) => r.id),
      ['plain'],
    );
    const changes = await request<{ results: Array<{ id: string }> }>(dbPath(local, '_changes'));
    assert.deepEqual(
      changes.body.results.map((r) => r.id),
      ['plain'],
    );
    expectStatus(await request(dbPath(local, `_local/checkpoint?rev=${current.body._rev}`), { method: 'DELETE' }), 200, 'DELETE _local');
    expectStatus(await request(dbPath(local, '_local/checkpoint')), 404, 'GET a deleted _local');
  });

  it('a database: 201 on create, 412 when it exists, 404 once deleted; GET / and /_up answer without credentials', async () => {
    const name = scratch.name('lifecycle');
    expectStatus(await request(`/${name}`, { method: 'PUT' }), 201, 'create');
    expectError(await request(`/${name}`, { method: 'PUT' }), 412, 'file_exists', undefined, 'create again');
    const info = await request<{ db_name: string; doc_count: number; update_seq: unknown }>(`/${name}`);
    assert.equal(info.body.db_name, name);
    assert.equal(info.body.doc_count, 0);
    assert.ok(info.body.update_seq !== undefined);
    expectStatus(await request(`/${name}`, { method: 'DELETE' }), 200, 'delete');
    expectError(await request(`/${name}`), 404, 'not_found', undefined, 'GET a deleted database');
    const root = await request<{ couchdb?: string; uuid?: string }>('/', { auth: null });
    expectStatus(root, 200, 'GET /');
    assert.equal(root.body.couchdb, 'Welcome');
    assert.equal(typeof root.body.uuid, 'string', 'GET / names the server uuid (the coordinator reads it)');
    const up = await request<{ status: string }>('/_up', { auth: null });
    expectStatus(up, 200, 'GET /_up');
    assert.equal(up.body.status, 'ok');
  });

  it('revision ids: N-<32 hex digits>, the same edit on one server gets the same id (how the value is computed differs between servers: docs/conformance.md)', async () => {
    const other = await scratch.db('twin');
    const revs: string[] = [];
    for (const name of [db, other]) {
      const first = await request<Written>(dbPath(name, 'rev-form'), { method: 'PUT', body: { same: 'body' } });
      assert.match(first.body.rev ?? '', REV);
      const second = await request<Written>(dbPath(name, 'rev-form'), { method: 'PUT', body: { _rev: first.body.rev, same: 'edit' } });
      revs.push(`${first.body.rev} ${second.body.rev}`);
    }
    assert.equal(revs[0], revs[1], 'the same edits on two databases of one server');
  });
});
