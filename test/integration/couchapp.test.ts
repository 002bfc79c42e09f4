import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'mocha';
import nano from 'nano';
import { type DaqDocument, stepRecord } from '../../core/document.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { historyTo } from '../../core/provenance.js';
import { DOC_TYPE, PIPELINE, STEP_NAMES, freshDoc } from '../support/generated-docs.js';
import { Database } from '../../store/database.js';
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
    assert.equal(error.reason, 'status good but proc0 is not done; status changed from "closed" to "good" without a history entry');

    error = await rejected(db.insert({ ...freshDoc('b'), status: 'finished' }));
    assert.equal(error.statusCode, 403);
    assert.match(error.reason ?? '', /^status "finished" is unknown/);

    const good = await db.insert({ ...freshDoc('c'), status: 'good', proc0: { attempts: 1, ok: true }, history: historyTo('good', STEP_NAMES) });
    error = await rejected(db.insert({ ...freshDoc('c'), _rev: good.rev, status: 'closed' }));
    assert.equal(error.statusCode, 403);
    // good → closed is a reprocess's edge now (core/invariants.ts): what refuses this write is the record dropped and the history cut.
    assert.equal(error.reason, 'proc0 cannot be removed; history entries cannot be removed');

    // Control documents and deletions by the admin party pass.
    await db.insert({ _id: 'mesh-agent:lyon:a1', type: 'mesh-agent', site: 'lyon', agent: 'a1', last_seen: NOW.toISOString() } as unknown as DaqDocument);
    await db.destroy('c', good.rev);
  });

  describe('provenance that cannot be rewritten, on every write path (the admin party is held to it too)', () => {
    /** A document processed through proc0 by the state machine, as stored. */
    async function processed(id: string): Promise<DaqDocument> {
      await db.insert(freshDoc(id));
      await apply(id, { type: 'claim', step: 'proc0', mode: 'run', site: 'lyon', agent: 'a1', host: 'h', lease_until: LEASE });
      return apply(id, {
        type: 'succeed',
        step: 'proc0',
        agent: 'a1',
        result: { exit_code: 0, duration_s: 1, file: '/sps/raw/x', checksum: { sha256: 'a'.repeat(64) } },
      });
    }
    const base = (d: DaqDocument) => ({ ...d });
    /** Forgeries of a stored document: [what, forged body, expected reason]. */
    function forgeries(stored: DaqDocument, closedDoc: DaqDocument): Array<[string, Record<string, unknown>, RegExp]> {
      const proc0 = stored.proc0 as Record<string, unknown>;
      return [
        [
          'closed → good with a fabricated proc0',
          { ...closedDoc, status: 'good', proc0: { ok: true, attempts: 1, file: '/etc/passwd' } },
          /without a history entry/,
        ],
        [
          'good → proc1 in progress with a made-up claim',
          { ...base(stored), status: 'proc1 in progress', pending: { proc1: { attempts: 1, agent: 'ghost', site: 'lyon', lease_until: LEASE } } },
          /without a history entry/,
        ],
        [
          'a failed attempt at the top level, where the original scripts read success',
          { ...base(stored), proc1: { attempts: 1, ok: false, retry_after: LEASE } },
          /proc1\.ok is false: a step record at the top level is a success/,
        ],
        ['rewriting the file of an ok record', { ...base(stored), proc0: { ...proc0, file: '/elsewhere' } }, /proc0 is done and cannot change/],
        [
          'rewriting the checksum of an ok record',
          { ...base(stored), proc0: { ...proc0, checksum: { sha256: 'b'.repeat(64) } } },
          /proc0 is done and cannot change/,
        ],
        ['deleting history', { ...base(stored), history: undefined }, /history cannot be removed/],
        ['emptying history', { ...base(stored), history: [] }, /history entries cannot be removed/],
        [
          'rewriting a past entry',
          { ...base(stored), history: [{ ...stored.history[0], by: 'someone/else' }, ...stored.history.slice(1)] },
          /history entry 0 cannot change/,
        ],
      ];
    }

    it('PUT', async () => {
      await pushDesign(meshDb, design);
      const stored = await processed('p');
      const closedDoc = await db.get((await db.insert(freshDoc('q'))).id);
      for (const [what, body, reason] of forgeries(stored, closedDoc)) {
        const error = await rejected(db.insert(body as unknown as DaqDocument));
        assert.equal(error.statusCode, 403, what);
        assert.match(error.reason ?? '', reason, what);
      }
      const claimed = await apply('q', { type: 'claim', step: 'proc0', mode: 'run', site: 'lyon', agent: 'a1', host: 'h', lease_until: LEASE });
      const lowered = await rejected(
        db.insert({ ...claimed, pending: { proc0: { ...(stepRecord(claimed, 'proc0') as object), attempts: 0 } } } as unknown as DaqDocument),
      );
      assert.match(lowered.reason ?? '', /proc0\.attempts cannot go down from 1 to 0|proc0\.attempts is 0/);
      assert.deepEqual(await db.get('p'), stored, 'the stored document is unchanged');
    });

    it('_bulk_docs', async () => {
      await pushDesign(meshDb, design);
      const stored = await processed('p');
      const closedDoc = await db.get((await db.insert(freshDoc('q'))).id);
      for (const [what, body, reason] of forgeries(stored, closedDoc)) {
        const [row] = await meshDb.bulk([body]);
        assert.equal(row.error, 'forbidden', what);
        assert.match(row.reason ?? '', reason, what);
      }
      assert.deepEqual(await db.get('p'), stored);
    });

    it('DELETE then a PUT without _rev carrying a forged record and an empty history', async () => {
      await pushDesign(meshDb, design);
      const stored = await processed('p');
      await db.destroy('p', stored._rev as string);
      const { _rev: _r, ...rest } = stored;
      const error = await rejected(db.insert({ ...rest, proc0: { ...(stored.proc0 as object), file: '/etc/passwd' }, history: [] } as unknown as DaqDocument));
      assert.equal(error.statusCode, 403);
      assert.match(error.reason ?? '', /status changed from null to "good" without a history entry/);
    });

    it('new_edits=false: a branch with no common ancestor is judged as a new document', async () => {
      await pushDesign(meshDb, design);
      const stored = await processed('p');
      const branch = (body: Record<string, unknown>) =>
        server.request({
          db: db.config.db,
          method: 'post',
          path: '_bulk_docs',
          body: {
            new_edits: false,
            docs: [
              {
                ...body,
                _rev: '9-ffffffffffffffffffffffffffffffff',
                _revisions: { start: 9, ids: ['ffffffffffffffffffffffffffffffff', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee'] },
              },
            ],
          },
        }) as Promise<Array<{ error?: string; reason?: string }>>;
      const unOk = await branch({
        ...base(stored),
        status: 'proc0 failed',
        proc0: undefined,
        pending: { proc0: { attempts: 1, ok: false } },
        history: stored.history.slice(0, 2),
      });
      assert.equal(unOk[0]?.error, 'forbidden', JSON.stringify(unOk));
      assert.match(unOk[0]?.reason ?? '', /history ends at "proc0 in progress" but status is "proc0 failed"/);
      const noHistory = await branch({ ...base(stored), history: [] });
      assert.equal(noHistory[0]?.error, 'forbidden', JSON.stringify(noHistory));
      const after = await db.get('p', { conflicts: true } as never);
      assert.deepEqual(after, stored, 'no branch reached the document');
    });
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
    assert.equal(stepRecord(retried, 'proc0')?.retry_after, '2026-11-26T10:05:00.000Z');
    assert.deepEqual(await ready('proc1', NOW.toISOString()), ['f1']);
    assert.deepEqual(await ready('proc2', '\ufff0'), []);

    const inFlight = await db.view('mesh', 'in_flight', { reduce: false });
    assert.deepEqual(
      inFlight.rows.map((row) => [row.id, row.key]),
      [
        ['f3', ['proc0', LEASE]],
        ['f0', ['proc1', LEASE]],
      ],
    );
    const done = await db.view<number>('mesh', 'done', { group: true });
    assert.deepEqual(
      done.rows.map((row) => [row.key, row.value]),
      [['proc0', 2]],
    );

    // A claim by another agent on a stale revision is a lost race (409), not a rule violation.
    const stale = await db.get('f1');
    await apply('f1', claim('proc1'));
    const lost = transition(stale, claim('proc1', 'a2'), NOW, PIPELINE);
    assert.ok(lost.ok);
    assert.equal((await rejected(db.insert(lost.doc))).statusCode, 409);
  });
});
