import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'mocha';
import nano from 'nano';
import type { DaqDocument } from '../../core/document.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../couchapp/push.js';
import { DOC_TYPE, PIPELINE, freshDoc } from '../support/generated-docs.js';
import { Database } from '../../core/couch.js';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const steps = PIPELINE.steps.map((s) => ({ ...s, site: 'lyon', run: [], out: '', timeout_s: 1, lease_s: 60, executor: 'command' as const }));
const design = designDocument({ doc_type: DOC_TYPE, steps });
const NOW = new Date('2026-11-26T10:00:00.000Z');
const LEASE = '2026-11-26T10:01:00.000Z';

interface CouchError {
  statusCode?: number;
  reason?: string;
}

async function rejected(write: Promise<unknown>): Promise<CouchError> {
  try {
    await write;
  } catch (error) {
    return error as CouchError;
  }
  assert.fail('the write was accepted');
}

describe('couchapp against a CouchDB-compatible server', function () {
  let couch: ServerProcess;
  let server: nano.ServerScope;
  let db: nano.DocumentScope<DaqDocument>;
  let meshDb: Database;
  let n = 0;

  before(async () => {
    couch = await startServerProcess();
    server = nano(couch.url);
  });
  after(async () => {
    await couch.stop();
    await stopAllServerProcesses();
  });

  beforeEach(async () => {
    const name = `couchapp-${process.pid}-${++n}`;
    await server.db.create(name);
    db = server.use<DaqDocument>(name);
    meshDb = new Database({ url: couch.url, database: name });
  });
  afterEach(async () => {
    await server.db.destroy(db.config.db);
  });

  /** Applies `event` to the stored document and writes the result with its _rev. */
  async function apply(id: string, event: MeshEvent): Promise<DaqDocument> {
    const current = await db.get(id);
    const result = transition(current, event, NOW, PIPELINE);
    if (!result.ok) throw result.error;
    const response = await db.insert(result.doc);
    return { ...result.doc, _rev: response.rev };
  }

  it('pushes idempotently: the second push writes nothing', async () => {
    const first = await pushDesign(meshDb, design);
    assert.equal(first.changed, true);
    const second = await pushDesign(meshDb, design);
    assert.deepEqual(second, { changed: false, rev: first.rev });
    const changed = designDocument({ doc_type: 'otherdoc', steps });
    const third = await pushDesign(meshDb, changed);
    assert.equal(third.changed, true);
    assert.match(third.rev, /^2-/);
  });

  it('refuses illegal writes with a 403 and the reason', async () => {
    await pushDesign(meshDb, design);
    const closed = await db.insert(freshDoc('a'));
    let error = await rejected(db.insert({ ...freshDoc('a'), _rev: closed.rev, status: 'good' }));
    assert.equal(error.statusCode, 403);
    assert.equal(error.reason, 'status good but proc0 is not ok');

    error = await rejected(db.insert({ ...freshDoc('b'), status: 'finished' }));
    assert.equal(error.statusCode, 403);
    assert.equal(error.reason, 'status "finished" is unknown');

    const good = await db.insert({ ...freshDoc('c'), status: 'good', proc0: { attempts: 1, ok: true } });
    error = await rejected(db.insert({ ...freshDoc('c'), _rev: good.rev, status: 'closed' }));
    assert.equal(error.statusCode, 403);
    assert.equal(error.reason, 'status cannot go from "good" to "closed"; proc0 was ok and must stay ok');

    error = await rejected(db.insert({ ...freshDoc('c'), _rev: good.rev, status: 'good', proc0: { attempts: 1, ok: false } }));
    assert.equal(error.reason, 'status good but proc0 is not ok; proc0 was ok and must stay ok');

    // Other documents and deletions pass.
    await db.insert({ _id: 'agent:lyon:a1', type: 'mesh-agent', site: 'lyon', agent: 'a1', last_seen: NOW.toISOString() } as unknown as DaqDocument);
    await db.destroy('c', good.rev);
  });

  it('accepts the transitions the state machine makes, and the views count them', async () => {
    await pushDesign(meshDb, design);
    for (let i = 0; i < 5; i++) await db.insert({ ...freshDoc(`f${i}`), file_number: i });
    const claim = (step: string, agent = 'a1'): MeshEvent => ({ type: 'claim', step, mode: 'run', site: 'lyon', agent, host: 'h', lease_until: LEASE });
    const succeed = (step: string): MeshEvent => ({ type: 'succeed', step, agent: 'a1', result: { exit_code: 0, duration_s: 1 } });

    // f0: proc0 done, proc1 running. f1: proc0 done. f2: proc0 failed once, waiting to retry. f3: claimed.
    await apply('f0', claim('proc0'));
    await apply('f0', succeed('proc0'));
    await apply('f0', claim('proc1'));
    await apply('f1', claim('proc0'));
    await apply('f1', succeed('proc0'));
    await apply('f2', claim('proc0'));
    const retried = await apply('f2', { type: 'fail', step: 'proc0', agent: 'a1', reason: 'exit 1', retry_after: '2026-11-26T10:05:00.000Z' });
    await apply('f3', claim('proc0'));
    await apply('f4', { type: 'mark_bad', by: 'op', reason: 'corrupt' });

    const byStatus = await db.view<number>('mesh', 'by_status', { group: true });
    assert.deepEqual(Object.fromEntries(byStatus.rows.map((row) => [row.key, row.value])), {
      bad: 1,
      closed: 1,
      good: 1,
      'proc0 in progress': 1,
      'proc1 in progress': 1,
    });

    const ready = async (step: string, until: string): Promise<string[]> =>
      (await db.view('mesh', 'ready', { reduce: false, startkey: [step, ''], endkey: [step, until] })).rows.map((row) => row.id).sort();
    assert.deepEqual(await ready('proc0', NOW.toISOString()), []);
    assert.deepEqual(await ready('proc0', '\ufff0'), ['f2']);
    assert.equal((retried.proc0 as { retry_after?: string }).retry_after, '2026-11-26T10:05:00.000Z');
    assert.deepEqual(await ready('proc1', NOW.toISOString()), ['f1']);
    assert.deepEqual(await ready('proc2', '\ufff0'), []);

    const inFlight = await db.view('mesh', 'in_flight', { reduce: false });
    assert.deepEqual(inFlight.rows.map((row) => [row.id, row.key]), [
      ['f3', ['proc0', LEASE]],
      ['f0', ['proc1', LEASE]],
    ]);
    const done = await db.view<number>('mesh', 'done', { group: true });
    assert.deepEqual(done.rows.map((row) => [row.key, row.value]), [['proc0', 2]]);
    const proc1 = await db.view('mesh', 'proc1', {});
    assert.deepEqual(proc1.rows.map((row) => row.key), [['lg23b002', 1]]);

    // A claim by another agent on a stale revision is a lost race (409), not a rule violation.
    const stale = await db.get('f1');
    await apply('f1', claim('proc1'));
    const lost = transition(stale, claim('proc1', 'a2'), NOW, PIPELINE);
    assert.ok(lost.ok);
    assert.equal((await rejected(db.insert(lost.doc))).statusCode, 409);
  });
});
