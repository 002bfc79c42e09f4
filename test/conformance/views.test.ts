/**
 * Conformance: `validate_doc_update` refusals, views with `_count`/`_sum`/`_stats`, `group_level`,
 * key ranges and the collation of the keys CouchMesh emits (couchapp/design.ts): `[step, time]`
 * with `''` as the lowest time, `[step]`…`[step, {}]`, `[run_name, file_number]`, `null` sites,
 * `prefix`…`prefix\ufff0`. Only lower-case ASCII, digits and ISO times are compared: CouchDB's
 * ICU collation and PouchDB's code-point order differ for mixed case (docs/conformance.md).
 * Bad query parameters are 400s.
 */
import assert from 'node:assert/strict';
import { Scratch, dbPath, expectError, expectStatus, releaseTarget, request } from './target.js';

interface Row<K = unknown, V = unknown> {
  id?: string;
  key: K;
  value: V;
  doc?: Record<string, unknown>;
}
type ViewAnswer<K = unknown, V = unknown> = { rows: Row<K, V>[]; total_rows?: number };

const DESIGN = {
  _id: '_design/conf',
  language: 'javascript',
  views: {
    // agents/discovery.ts, coordinator/status.ts: [step, retry_after || ''].
    ready: { map: "function (doc) { if (doc.step) emit([doc.step, doc.t || ''], null); }", reduce: '_count' },
    // coordinator/flow.ts: [step, hour, finished], grouped by level 2.
    flow: { map: 'function (doc) { if (doc.step && doc.t) emit([doc.step, doc.t.slice(0, 13), doc.t], doc.size || 0); }', reduce: '_count' },
    sizes: { map: 'function (doc) { if (doc.step) emit(doc.step, doc.size || 0); }', reduce: '_sum' },
    // dashboard/snapshot.ts: by_host_run with _stats, group_level 2, descending.
    by_host_run: {
      map: "function (doc) { if (typeof doc.file_number === 'number') emit([doc.daq_host || 'unknown', doc.run_name], doc.file_number); }",
      reduce: '_stats',
    },
    // dashboard/document.ts: [run_name, file_number], neighbours by descending + skip.
    by_run: {
      map: "function (doc) { if (doc.run_name) emit([doc.run_name, typeof doc.file_number === 'number' ? doc.file_number : null], doc.status || null); }",
    },
    by_file_name: { map: "function (doc) { if (typeof doc.file === 'string') emit(doc.file.slice(doc.file.lastIndexOf('/') + 1), null); }" },
    agents: {
      map: "function (doc) { if (doc.type === 'agent') emit([doc.site === undefined ? null : doc.site, doc.agent === undefined ? null : doc.agent], null); }",
    },
  },
};

const q = (params: Record<string, unknown>): string =>
  '?' +
  Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(typeof v === 'string' && !['startkey', 'endkey', 'key', 'keys'].includes(k) ? v : JSON.stringify(v))}`)
    .join('&');

describe('conformance: validate_doc_update and views', function () {
  const scratch = new Scratch('views');
  let db: string;

  const view = async <K = unknown, V = unknown>(name: string, params: Record<string, unknown> = {}): Promise<Row<K, V>[]> => {
    const answer = await request<ViewAnswer<K, V>>(dbPath(db, `_design/conf/_view/${name}${Object.keys(params).length ? q(params) : ''}`), {
      timeoutMs: 60_000,
    });
    expectStatus(answer, 200, `view ${name} ${JSON.stringify(params)}`);
    return answer.body.rows;
  };

  before(async () => {
    db = await scratch.db('main');
    expectStatus(await request(dbPath(db, '_design/conf'), { method: 'PUT', body: DESIGN }), 201, 'design document');
    const docs = [
      { _id: 'r1', step: 'proc1', t: '' },
      { _id: 'r2', step: 'proc1', t: '2026-11-26T09:59:59.999Z', size: 5 },
      { _id: 'r3', step: 'proc1', t: '2026-11-26T10:00:00.000Z', size: 7 },
      { _id: 'r4', step: 'proc1', t: '2026-11-26T10:30:00.000Z', size: 1 },
      { _id: 'r5', step: 'proc1', t: '2026-12-01T00:00:00.000Z', size: 2 },
      { _id: 'r6', step: 'proc2', t: '2026-11-26T10:00:00.000Z', size: 100 },
      { _id: 'r7', step: 'proc10', t: '2026-11-26T10:00:00.000Z', size: 1000 },
      { _id: 'run_lg23b002_000', run_name: 'lg23b002', file_number: 0, daq_host: 'daq1', file: '/data/samba/lg23b002/lg23b002_000', status: 'good' },
      { _id: 'run_lg23b002_002', run_name: 'lg23b002', file_number: 2, daq_host: 'daq1', file: '/data/samba/lg23b002/lg23b002_002', status: 'closed' },
      { _id: 'run_lg23b002_010', run_name: 'lg23b002', file_number: 10, daq_host: 'daq1', file: '/data/samba/lg23b002/lg23b002_010', status: 'closed' },
      { _id: 'run_lg23b003_000', run_name: 'lg23b003', file_number: 0, daq_host: 'daq1', file: '/data/samba/lg23b003/lg23b003_000', status: 'closed' },
      { _id: 'run_lg23c001_004', run_name: 'lg23c001', file_number: 4, daq_host: 'daq2', file: '/data/samba/lg23c001/lg23c001_004', status: 'closed' },
      { _id: 'run_lg23b002_x', run_name: 'lg23b002', status: 'bad' },
      { _id: 'agent-1', type: 'agent', site: 'lyon', agent: 'lyon-1' },
      { _id: 'agent-2', type: 'agent' },
      { _id: 'agent-3', type: 'agent', site: 'modane', agent: 'modane-1' },
    ];
    const bulk = await request<Array<{ error?: string }>>(dbPath(db, '_bulk_docs'), { method: 'POST', body: { docs } });
    expectStatus(bulk, 201, 'documents');
    assert.ok(
      bulk.body.every((r) => !r.error),
      JSON.stringify(bulk.body),
    );
  });
  after(() => scratch.cleanUp());
  after(releaseTarget);

  describe('validate_doc_update', () => {
    let guarded: string;
    before(async () => {
      guarded = await scratch.db('guarded');
      const validate =
        "function (newDoc, oldDoc, userCtx, secObj) { if (newDoc._deleted) return; if (newDoc.state === 'bogus') throw({ forbidden: 'state bogus is not allowed' });" +
        " if (newDoc.who) throw({ unauthorized: 'only ' + newDoc.who + ' may write this' }); if (oldDoc && oldDoc.locked) throw({ forbidden: 'locked' }); }";
      expectStatus(await request(dbPath(guarded, '_design/rules'), { method: 'PUT', body: { validate_doc_update: validate } }), 201, 'validator');
    });

    it('a {forbidden} throw is 403 forbidden with the thrown reason, an {unauthorized} one 401; nothing is stored', async () => {
      expectError(
        await request(dbPath(guarded, 'x'), { method: 'PUT', body: { state: 'bogus' } }),
        403,
        'forbidden',
        'state bogus is not allowed',
        'PUT refused',
      );
      expectError(
        await request(dbPath(guarded, 'y'), { method: 'PUT', body: { who: 'lyon' } }),
        401,
        'unauthorized',
        'only lyon may write this',
        'PUT unauthorized',
      );
      expectStatus(await request(dbPath(guarded, 'x')), 404, 'the refused document');
      expectStatus(await request(dbPath(guarded, 'y')), 404, 'the unauthorized document');
    });

    it('_bulk_docs reports each refusal on its row, in request order, and stores the others', async () => {
      const answer = await request<Array<{ id: string; ok?: boolean; error?: string; reason?: string }>>(dbPath(guarded, '_bulk_docs'), {
        method: 'POST',
        body: {
          docs: [
            { _id: 'm1', state: 'queued' },
            { _id: 'm2', state: 'bogus' },
            { _id: 'm3', state: 'queued', locked: true },
            { _id: 'm4', state: 'bogus' },
          ],
        },
      });
      expectStatus(answer, 201, '_bulk_docs with refusals');
      assert.deepEqual(
        answer.body.map((r) => [r.id, r.error ?? 'ok', r.reason ?? '']),
        [
          ['m1', 'ok', ''],
          ['m2', 'forbidden', 'state bogus is not allowed'],
          ['m3', 'ok', ''],
          ['m4', 'forbidden', 'state bogus is not allowed'],
        ],
      );
      const m3 = await request<{ _rev: string }>(dbPath(guarded, 'm3'));
      // oldDoc is the stored revision.
      expectError(
        await request(dbPath(guarded, 'm3'), { method: 'PUT', body: { _rev: m3.body._rev, state: 'done' } }),
        403,
        'forbidden',
        'locked',
        'an update the old document forbids',
      );
      // A stale revision is a conflict before the validator runs.
      expectError(
        await request(dbPath(guarded, 'm1'), { method: 'PUT', body: { state: 'bogus' } }),
        409,
        'conflict',
        undefined,
        'stale write the validator would refuse',
      );
    });
    it('the same for a database member (not an admin): rows in request order, conflicts and refusals on theirs', async () => {
      const member = await scratch.user('bulk_member');
      expectStatus(
        await request(dbPath(guarded, '_security'), {
          method: 'PUT',
          body: { admins: { names: [], roles: [] }, members: { names: [member.name], roles: [] } },
        }),
        200,
        'member access',
      );
      const rows = (docs: object[]) =>
        request<Array<{ id: string; error?: string }>>(dbPath(guarded, '_bulk_docs'), { method: 'POST', auth: member.auth, body: { docs } });
      const first = await rows([
        { _id: 'n1', state: 'queued' },
        { _id: 'n2', state: 'queued' },
      ]);
      expectStatus(first, 201, 'member _bulk_docs');
      const answer = await rows([
        { _id: 'n3', state: 'bogus' },
        { _id: 'n4', state: 'queued' },
        { _id: 'n1', state: 'queued' },
        { _id: 'n5', state: 'queued' },
        { _id: 'n6', state: 'bogus' },
        { _id: 'n7', state: 'queued' },
      ]);
      expectStatus(answer, 201, 'member _bulk_docs with refusals and a conflict');
      assert.deepEqual(
        answer.body.map((r) => [r.id, r.error ?? 'ok']),
        [
          ['n3', 'forbidden'],
          ['n4', 'ok'],
          ['n1', 'conflict'],
          ['n5', 'ok'],
          ['n6', 'forbidden'],
          ['n7', 'ok'],
        ],
      );
    });
  });

  describe('reduce', () => {
    it('_count: whole, grouped, per level, over [step, time] ranges', async () => {
      assert.deepEqual(await view('ready'), [{ key: null, value: 7 }]);
      assert.deepEqual(await view('ready', { group_level: 1 }), [
        { key: ['proc1'], value: 5 },
        { key: ['proc10'], value: 1 },
        { key: ['proc2'], value: 1 },
      ]);
      assert.deepEqual(await view('ready', { startkey: ['proc1', ''], endkey: ['proc1', '2026-11-26T10:00:00.000Z'] }), [{ key: null, value: 3 }]);
      assert.deepEqual(await view('ready', { startkey: ['proc1', ''], endkey: ['proc1', '2026-11-26T10:00:00.000Z'], inclusive_end: false }), [
        { key: null, value: 2 },
      ]);
    });

    it('_count with group_level 2 over [step, hour, time] (the flow view)', async () => {
      const rows = await view<[string, string], number>('flow', {
        group_level: 2,
        startkey: ['proc1', '2026-11-26T09'],
        endkey: ['proc1', '2026-11-26T10', {}],
      });
      assert.deepEqual(rows, [
        { key: ['proc1', '2026-11-26T09'], value: 1 },
        { key: ['proc1', '2026-11-26T10'], value: 2 },
      ]);
    });

    it('_sum grouped by key', async () => {
      assert.deepEqual(await view('sizes', { group: true }), [
        { key: 'proc1', value: 15 },
        { key: 'proc10', value: 1000 },
        { key: 'proc2', value: 100 },
      ]);
      assert.deepEqual(await view('sizes', { key: 'proc2' }), [{ key: null, value: 100 }]);
    });

    it('_stats {sum, count, min, max, sumsqr}, group_level 2, descending with a limit (the status page)', async () => {
      const rows = await view<[string, string], Record<string, number>>('by_host_run', { group_level: 2, descending: true, limit: 2 });
      assert.deepEqual(rows, [
        { key: ['daq2', 'lg23c001'], value: { sum: 4, count: 1, min: 4, max: 4, sumsqr: 16 } },
        { key: ['daq1', 'lg23b003'], value: { sum: 0, count: 1, min: 0, max: 0, sumsqr: 0 } },
      ]);
      const lg23b002 = await view<[string, string], Record<string, number>>('by_host_run', { group: true, key: ['daq1', 'lg23b002'] });
      assert.deepEqual(lg23b002, [{ key: ['daq1', 'lg23b002'], value: { sum: 12, count: 3, min: 0, max: 10, sumsqr: 104 } }]);
    });

    it('reduce=false with include_docs and keys (POST)', async () => {
      const rows = await view('ready', { reduce: false, include_docs: true, startkey: ['proc2'], endkey: ['proc2', {}] });
      assert.deepEqual(
        rows.map((r) => [r.id, r.doc?._id]),
        [['r6', 'r6']],
      );
      const keyed = await request<ViewAnswer>(dbPath(db, '_design/conf/_view/sizes?reduce=false'), {
        method: 'POST',
        body: { keys: ['proc2', 'proc10', 'none'] },
      });
      expectStatus(keyed, 200, 'POST view with keys');
      assert.deepEqual(
        keyed.body.rows.map((r) => r.id),
        ['r6', 'r7'],
      );
    });
  });

  describe('collation of the keys CouchMesh emits', () => {
    it("[step, ''] sorts before every time; [step] … [step, {}] holds exactly one step (proc1 ≠ proc10)", async () => {
      const rows = await view('ready', { reduce: false, startkey: ['proc1'], endkey: ['proc1', {}] });
      assert.deepEqual(
        rows.map((r) => r.id),
        ['r1', 'r2', 'r3', 'r4', 'r5'],
      );
      const due = await view('ready', { reduce: false, startkey: ['proc1', ''], endkey: ['proc1', '2026-11-26T10:30:00.000Z'] });
      assert.deepEqual(
        due.map((r) => r.id),
        ['r1', 'r2', 'r3', 'r4'],
      );
      const all = await view<[string, string]>('ready', { reduce: false });
      assert.deepEqual([...new Set(all.map((r) => r.key[0]))], ['proc1', 'proc10', 'proc2']);
    });

    it('[run_name, file_number]: numbers in numeric order, null before numbers, neighbours by descending + skip', async () => {
      const rows = await view<[string, number | null]>('by_run', { startkey: ['lg23b002'], endkey: ['lg23b002', {}] });
      assert.deepEqual(
        rows.map((r) => r.key),
        [
          ['lg23b002', null],
          ['lg23b002', 0],
          ['lg23b002', 2],
          ['lg23b002', 10],
        ],
      );
      const previous = await view('by_run', { startkey: ['lg23b002', 10], descending: true, skip: 1, limit: 1 });
      assert.deepEqual(
        previous.map((r) => r.id),
        ['run_lg23b002_002'],
      );
      const next = await view('by_run', { startkey: ['lg23b002', 10], skip: 1, limit: 1 });
      assert.deepEqual(
        next.map((r) => r.id),
        ['run_lg23b003_000'],
      );
      const lastOfRun = await view('by_run', { startkey: ['lg23b002', {}], descending: true, limit: 1 });
      assert.deepEqual(
        lastOfRun.map((r) => r.id),
        ['run_lg23b002_010'],
      );
      const runs = await view<[string, unknown]>('by_run');
      assert.deepEqual([...new Set(runs.map((r) => r.key[0]))], ['lg23b002', 'lg23b003', 'lg23c001']);
    });

    it("a prefix range 'prefix' … 'prefix\\ufff0' (file-name search)", async () => {
      const rows = await view<string>('by_file_name', { startkey: 'lg23b002', endkey: 'lg23b002\ufff0' });
      assert.deepEqual(
        rows.map((r) => r.key),
        ['lg23b002_000', 'lg23b002_002', 'lg23b002_010'],
      );
    });

    it('null sorts before strings in [site, agent]', async () => {
      const rows = await view<[string | null, string | null]>('agents');
      assert.deepEqual(
        rows.map((r) => r.key),
        [
          [null, null],
          ['lyon', 'lyon-1'],
          ['modane', 'modane-1'],
        ],
      );
    });
  });

  describe('bad query parameters', () => {
    it('400 for startkey, endkey, key or keys that are not JSON, and for a POST body keys that is not an array', async () => {
      for (const bad of ['startkey=%5B%22proc1%22', 'endkey=not-json', 'key=%7Bx', 'keys=%5B1%2C']) {
        expectError(await request(dbPath(db, `_design/conf/_view/ready?${bad}`)), 400, 'bad_request', undefined, `view ?${bad}`);
        expectError(await request(dbPath(db, `_all_docs?${bad}`)), 400, 'bad_request', undefined, `_all_docs ?${bad}`);
      }
      expectError(
        await request(dbPath(db, '_design/conf/_view/ready'), { method: 'POST', body: { keys: 'proc1' } }),
        400,
        'bad_request',
        undefined,
        'view POST keys not an array',
      );
    });

    it('400 query_parse_error for a group_level or limit that is not a number', async () => {
      expectError(await request(dbPath(db, '_design/conf/_view/ready?group_level=two')), 400, 'query_parse_error', undefined, 'group_level=two');
      expectError(await request(dbPath(db, '_design/conf/_view/ready?limit=-1')), 400, 'query_parse_error', undefined, 'limit=-1');
    });

    it('404 for a view or design document that does not exist', async () => {
      expectError(await request(dbPath(db, '_design/conf/_view/nope')), 404, 'not_found', undefined, 'missing view');
      expectError(await request(dbPath(db, '_design/nope/_view/ready')), 404, 'not_found', undefined, 'missing design document');
    });
  });
});
