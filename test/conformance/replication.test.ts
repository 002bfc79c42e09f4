/**
 * Conformance: a `_replicator` job of exactly the shape coordinator/replication.ts writes
 * (`{url, headers: {Authorization}}` endpoints, `continuous: true`, a `mesh_written` field),
 * between two databases of the server under test, addressed by the server's own URL; the
 * documents arrive, and `/_scheduler/docs` reports the job with its `state`.
 */
import assert from 'node:assert/strict';
import { Scratch, dbPath, expectError, expectStatus, releaseTarget, request, target, waitFor } from './target.js';

/** CouchDB 3's scheduler states (docs: Replication › Replication states). */
const STATES = ['initializing', 'running', 'pending', 'crashing', 'error', 'failed', 'completed'];

interface SchedulerDoc {
  database: string;
  doc_id: string;
  state: string;
  source?: string;
  target?: string;
  info?: { changes_pending?: number | null } | null;
}

describe('conformance: _replicator and /_scheduler/docs', function () {
  const scratch = new Scratch('repl');
  after(() => scratch.cleanUp());
  after(releaseTarget);

  it('a continuous job with Authorization headers copies the documents; /_scheduler/docs shows it running; deleting it ends it', async () => {
    const { url, adminAuth } = await target();
    const [source, destination] = [await scratch.db('source'), await scratch.db('target')];
    expectStatus(await request(dbPath(source, 'before'), { method: 'PUT', body: { n: 1 } }), 201, 'a document before the job');
    const id = scratch.name('job');
    scratch.replicatorDoc(id);
    const job = {
      _id: id,
      source: { url: `${url}/${encodeURIComponent(source)}`, headers: { Authorization: adminAuth } },
      target: { url: `${url}/${encodeURIComponent(destination)}`, headers: { Authorization: adminAuth } },
      continuous: true,
      mesh_written: new Date().toISOString(),
    };
    expectStatus(await request(`/_replicator/${encodeURIComponent(id)}`, { method: 'PUT', body: job }), 201, 'PUT the _replicator document');

    await waitFor('the first document on the target', async () => ((await request(dbPath(destination, 'before'))).status === 200 ? true : undefined));
    expectStatus(await request(dbPath(source, 'while'), { method: 'PUT', body: { n: 2 } }), 201, 'a document while the job runs');
    await waitFor('the second document on the target', async () => ((await request(dbPath(destination, 'while'))).status === 200 ? true : undefined));

    const scheduled = await waitFor('the job running in /_scheduler/docs/_replicator/<id>', async () => {
      const one = await request<SchedulerDoc>(`/_scheduler/docs/_replicator/${encodeURIComponent(id)}`);
      return one.status === 200 && one.body.state === 'running' ? one.body : undefined;
    });
    assert.equal(scheduled.database, '_replicator');
    assert.equal(scheduled.doc_id, id);
    assert.ok(scheduled.info === undefined || scheduled.info === null || typeof scheduled.info === 'object');
    const pending = scheduled.info?.changes_pending;
    assert.ok(pending === undefined || pending === null || typeof pending === 'number', `changes_pending ${pending}`);
    for (const endpoint of [scheduled.source, scheduled.target]) {
      if (endpoint !== undefined) assert.ok(!endpoint.includes(adminAuth.slice(6)), 'the scheduler shows no credentials');
    }

    const list = await request<{ docs: SchedulerDoc[]; total_rows?: number }>('/_scheduler/docs?limit=1000');
    expectStatus(list, 200, 'GET /_scheduler/docs');
    const listed = list.body.docs.find((d) => d.database === '_replicator' && d.doc_id === id);
    assert.ok(listed, 'the job is listed in /_scheduler/docs');
    assert.ok(STATES.includes(listed.state), `state ${listed.state}`);

    const missing = await request(`/_scheduler/docs/_replicator/${encodeURIComponent(scratch.name('no-such-job'))}`);
    expectError(missing, 404, 'not_found', undefined, 'a job that does not exist');

    // Deleting the document cancels the job: later writes no longer arrive.
    await scratch.cleanUp();
    scratch.replicatorDoc(id);
    await waitFor('the job gone from /_scheduler/docs', async () =>
      (await request(`/_scheduler/docs/_replicator/${encodeURIComponent(id)}`)).status === 404 ? true : undefined,
    );
    // The databases were deleted by cleanUp with the job; nothing else to check there.
  });
});
