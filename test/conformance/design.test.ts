/**
 * Conformance: the design documents CouchMesh generates (`_design/mesh` from couchapp/design.ts,
 * the original scripts' `_design/proc` from couchapp/original-design.ts) are accepted by the
 * server's JavaScript engine (CouchDB 3.5: QuickJS or SpiderMonkey), every view and filter
 * answers, and the generated `validate_doc_update` (which reads `userCtx`) admits a document
 * catalogued by the ingest site's agent account and refuses forged ones with a 403 whose reason
 * names the problem.
 */
import assert from 'node:assert/strict';
import { designDocument } from '../../couchapp/design.js';
import { originalDesignDocument } from '../../couchapp/original-design.js';
import { agentRole } from '../../core/roles.js';
import { DOC_TYPE, PIPELINE, STEP_NAMES, freshDoc } from '../support/generated-docs.js';
import { Scratch, dbPath, expectError, expectStatus, releaseTarget, request } from './target.js';
import { siteFixture as site } from '../support/records.js';

const steps = PIPELINE.steps.map((s) => ({ ...s, site: 'lyon', run: [], out: '', timeout_s: 1, lease_s: 60, executor: 'command' as const }));
const INPUT = {
  doc_type: DOC_TYPE,
  steps,
  sites: { modane: site('modane', []), lyon: site('lyon', STEP_NAMES), kit: site('kit', STEP_NAMES) },
  ingest: { site: 'modane', pattern: '', quiet_s: 1 },
};

describe('conformance: the generated design documents', function () {
  const scratch = new Scratch('design');
  let db: string;
  const mesh = designDocument(INPUT as never);
  const original = originalDesignDocument(INPUT as never);

  before(async () => {
    db = await scratch.db('main');
    expectStatus(await request(dbPath(db, mesh._id), { method: 'PUT', body: mesh }), 201, `PUT ${mesh._id}`);
    expectStatus(await request(dbPath(db, original._id), { method: 'PUT', body: original }), 201, `PUT ${original._id}`);
  });
  after(() => scratch.cleanUp());
  after(releaseTarget);

  it("the generated validate_doc_update admits a document catalogued by the ingest site's agent and refuses a forged status with a 403 reason", async () => {
    const ingest = await scratch.user('ingest', [agentRole('modane')]);
    const security = { admins: { names: [], roles: [] }, members: { names: [], roles: [agentRole('modane')] } };
    expectStatus(await request(dbPath(db, '_security'), { method: 'PUT', body: security }), 200, 'admit the agent role');
    const catalogued = (id: string) => {
      const doc = freshDoc(id);
      doc.history = doc.history.map((entry) => ({ ...entry, user: ingest.name }));
      return doc;
    };
    expectStatus(
      await request(dbPath(db, 'run_lg23b002_000'), { method: 'PUT', auth: ingest.auth, body: catalogued('run_lg23b002_000') }),
      201,
      'a catalogued document',
    );
    const forged = { ...catalogued('run_lg23b002_001'), status: 'proc2 in progress' };
    expectError(
      await request(dbPath(db, 'run_lg23b002_001'), { method: 'PUT', auth: ingest.auth, body: forged }),
      403,
      'forbidden',
      /./,
      'a document whose status its records contradict',
    );
    const stranger = catalogued('run_lg23b002_002');
    stranger.history = stranger.history.map((entry) => ({ ...entry, user: 'someone-else' }));
    expectError(
      await request(dbPath(db, 'run_lg23b002_002'), { method: 'PUT', auth: ingest.auth, body: stranger }),
      403,
      'forbidden',
      /history entry of account "someone-else"/,
      "a history entry in another account's name",
    );
  });

  it('every view of both design documents answers', async () => {
    for (const design of [mesh, original]) {
      const name = design._id.slice('_design/'.length);
      for (const view of Object.keys(design.views)) {
        const answer = await request<{ rows?: unknown[] }>(dbPath(db, `_design/${name}/_view/${view}?limit=5`), { timeoutMs: 60_000 });
        expectStatus(answer, 200, `view ${name}/${view}`);
        assert.ok(Array.isArray(answer.body.rows), `view ${name}/${view}: rows`);
      }
    }
  });

  it("the original scripts' filters answer on _changes", async () => {
    const name = original._id.slice('_design/'.length);
    for (const filter of Object.keys(original.filters)) {
      const answer = await request<{ results?: Array<{ id: string }> }>(dbPath(db, `_changes?filter=${name}/${filter}`), { timeoutMs: 60_000 });
      expectStatus(answer, 200, `filter ${name}/${filter}`);
      assert.ok(Array.isArray(answer.body.results));
    }
    const fresh = await request<{ results: Array<{ id: string }> }>(dbPath(db, `_changes?filter=${name}/newproc0`));
    assert.deepEqual(
      fresh.body.results.map((r) => r.id),
      ['run_lg23b002_000'],
      'newproc0 selects the closed document',
    );
  });
});
