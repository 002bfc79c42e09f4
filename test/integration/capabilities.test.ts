/**
 * The capability probe and the job-state readers (store/capabilities.ts, store/replication.ts)
 * against scripted loopback servers: CouchDB 3's `/_scheduler/docs` answers, its absence (404),
 * and failures that must not be remembered.
 */
import assert from 'node:assert/strict';
import { CapabilityCache } from '../../store/capabilities.js';
import { Database } from '../../store/database.js';
import { type ReplicatorDocument, documentState, schedulerState } from '../../store/replication.js';
import { type GarbageServer, type Rule, startGarbageServer } from '../support/garbage-server.js';

const json = (body: unknown, status = 200) => ({ status, body: JSON.stringify(body) });
const server = (url: string) => new Database({ url, database: '', timeoutMs: 5_000 });

describe('server capabilities and replication job state', () => {
  const started: GarbageServer[] = [];
  const start = async (rules: Rule[]) => {
    const s = await startGarbageServer(rules);
    started.push(s);
    return s;
  };
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop()));
  });

  it('probes /_scheduler/docs once per server: present on 2xx, absent on 404, concurrent callers share the probe', async () => {
    const couch = await start([{ match: '^GET /_scheduler/docs\\?', answer: json({ total_rows: 0, offset: 0, docs: [] }) }]);
    const embedded = await start([]);
    const cache = new CapabilityCache();
    const learned: string[] = [];
    const [a, b] = await Promise.all([
      cache.of(server(couch.url), () => learned.push('couch')),
      cache.of(server(couch.url), () => learned.push('couch again')),
    ]);
    assert.deepEqual([a, b], [{ schedulerDocs: true }, { schedulerDocs: true }]);
    assert.deepEqual(await cache.of(server(embedded.url), () => learned.push('embedded')), { schedulerDocs: false });
    await cache.of(server(couch.url));
    await cache.of(server(embedded.url));
    assert.deepEqual(learned, ['couch', 'embedded'], "each server's capabilities are learned once");
    assert.equal(couch.requests.length, 1);
    assert.equal(embedded.requests.length, 1);
  });

  it('a probe that fails (5xx, refused) learns nothing: thrown, and asked again next time', async () => {
    const flaky = await start([
      { match: '^GET /_scheduler/docs\\?', times: 1, answer: json({ error: 'internal_server_error', reason: 'boom' }, 500) },
      { match: '^GET /_scheduler/docs\\?', times: 1, answer: json({ error: 'unauthorized', reason: 'You are not a server admin.' }, 401) },
      { match: '^GET /_scheduler/docs\\?', answer: json({ docs: [] }) },
    ]);
    const cache = new CapabilityCache();
    await assert.rejects(cache.of(server(flaky.url)), (e: { code?: string }) => e.code === 'SERVER_ERROR');
    assert.equal(cache.peek(flaky.url), undefined);
    await assert.rejects(cache.of(server(flaky.url)), (e: { code?: string }) => e.code === 'UNAUTHORIZED');
    assert.deepEqual(await cache.of(server(flaky.url)), { schedulerDocs: true });
  });

  it("the scheduler's state, error reason and changes_pending; a job not scheduled yet is pending", async () => {
    const couch = await start([
      {
        match: '/_scheduler/docs/_replicator/mesh-db-kit-to-modane$',
        answer: json({ state: 'crashing', info: { error: 'replication_auth_error: Unauthorized' }, error_count: 2 }),
      },
      {
        match: '/_scheduler/docs/_replicator/mesh-db-modane-to-kit$',
        answer: json({ state: 'running', info: { changes_pending: null, checkpointed_source_seq: '12-g1AAAA' } }),
      },
      { match: '/_scheduler/docs/_replicator/mesh-db-counted$', answer: json({ state: 'running', info: { changes_pending: 105 } }) },
    ]);
    const host = server(couch.url);
    assert.deepEqual(await schedulerState(host, 'mesh-db-kit-to-modane'), { state: 'crashing', reason: 'replication_auth_error: Unauthorized', pending: null });
    assert.deepEqual(await schedulerState(host, 'mesh-db-modane-to-kit'), { state: 'running', pending: null });
    assert.deepEqual(await schedulerState(host, 'mesh-db-counted'), { state: 'running', pending: 105 });
    assert.deepEqual(await schedulerState(host, 'mesh-db-new'), { state: 'pending', pending: null }, '404: written a moment ago, not scheduled yet');
  });

  it('without a scheduler, the state and reason the replicator wrote into the _replicator document', () => {
    const base: ReplicatorDocument = { _id: 'mesh-db-kit-to-modane', source: 'http://127.0.0.1:1/db', target: 'http://127.0.0.1:2/db', continuous: true };
    assert.deepEqual(documentState({ ...base, _replication_state: 'triggered', _replication_id: 'x' }), { state: 'running', pending: null });
    assert.deepEqual(documentState({ ...base, _replication_state: 'error', _replication_state_reason: 'connect ECONNREFUSED 127.0.0.1:2' }), {
      state: 'error',
      reason: 'connect ECONNREFUSED 127.0.0.1:2',
      pending: null,
    });
    assert.deepEqual(documentState({ ...base, _replication_id: 'x' }), { state: 'ignored', pending: null }, 'a duplicate the replicator will never run');
    assert.deepEqual(documentState(base), { state: 'pending', pending: null });
  });
});
