/** The embedded server's `/_scheduler/docs` entries, from pouchdb-replicator's annotations (server/scheduler.ts). */
import assert from 'node:assert/strict';
import { endpointUrl, schedulerDoc, schedulerState } from '../../server/scheduler.js';

describe('embedded /_scheduler/docs', () => {
  it("maps pouchdb-replicator's annotations to CouchDB 3's states", () => {
    assert.equal(schedulerState({ _id: 'j', _replication_state: 'triggered', _replication_id: 'r' }).state, 'running');
    assert.equal(schedulerState({ _id: 'j', _replication_state: 'completed', _replication_id: 'r' }).state, 'completed');
    const crashed = schedulerState({ _id: 'j', _replication_state: 'error', _replication_state_reason: 'boom' });
    assert.deepEqual([crashed.state, crashed.info, crashed.errorCount], ['crashing', { error: 'boom' }, 1]);
    // A replication id without a state: taken for a duplicate, never started.
    assert.equal(schedulerState({ _id: 'j', _replication_id: 'r' }).state, 'failed');
    assert.deepEqual(schedulerState({ _id: 'j' }), { state: 'initializing', info: null, errorCount: 0 });
  });

  it('shows endpoints without credentials, from a URL string or an {url, headers} object', () => {
    assert.equal(endpointUrl('http://user:secret@127.0.0.1:5984/db'), 'http://127.0.0.1:5984/db');
    assert.equal(endpointUrl({ url: 'http://127.0.0.1:5984/db' }), 'http://127.0.0.1:5984/db');
    assert.equal(endpointUrl('localdb'), 'localdb');
    assert.equal(endpointUrl(undefined), null);
    const doc = schedulerDoc({
      _id: 'job',
      source: { url: 'http://a:b@h:1/x', headers: { Authorization: 'Basic c2VjcmV0' } } as never,
      target: 'http://h:2/y',
      _replication_state: 'triggered',
      _replication_id: 'rid',
      _replication_state_time: '2026-12-01T00:00:00.000Z',
    });
    assert.deepEqual(
      [doc.database, doc.doc_id, doc.id, doc.source, doc.target, doc.state, doc.last_updated],
      ['_replicator', 'job', 'rid', 'http://h:1/x', 'http://h:2/y', 'running', '2026-12-01T00:00:00.000Z'],
    );
    assert.ok(!JSON.stringify(doc).includes('c2VjcmV0'), 'no Authorization header in the answer');
  });
});
