/**
 * An aborted request ends at once, also after a garbage collection (issue 9, item 8). On
 * Node 20, once a longpoll's headers are in, fetch follows its signal only through a weak
 * reference: before core/abort.ts and the body cancel in core/couch-http.ts, a collection
 * between the headers and the abort left the longpoll running for its whole timeout (an agent
 * took 27 s to stop). Real embedded server over HTTP; the collection is forced, not hoped for.
 */
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Database } from '../../store/database.js';
import { isMeshError } from '../../core/errors.js';
import { uniqueDatabase } from '../support/mesh.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

// A full collection on demand, without starting mocha with --expose-gc.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const LONGPOLL_MS = 20_000;
/** Generous against a loaded machine, and still a tenth of the longpoll that a lost abort waits out. */
const ABORT_BOUND_MS = 2_000;

describe('aborting a request after a garbage collection', function () {
  this.timeout(60_000);
  let server: ServerProcess;
  let db: Database;

  before(async () => {
    server = await startServerProcess();
    db = new Database({ url: server.url, database: uniqueDatabase('abort') });
    await db.ensure();
  });

  after(async () => {
    await server?.stop();
  });

  it('a request made with a signal already aborted fails as ABORTED and leaves no unhandled rejection (it ended an agent on SIGTERM)', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const aborted = new Database({ url: server.url, database: db.name, signal: AbortSignal.abort() });
      const error = await aborted.get('anything').catch((e: unknown) => e);
      assert.ok(isMeshError(error, 'ABORTED') || (error instanceof Error && error.name === 'AbortError'), String(error));
      // Rejections are reported after the microtasks of the turn: give them two turns.
      await new Promise((done) => setImmediate(done));
      await new Promise((done) => setImmediate(done));
      assert.deepEqual(unhandled.map(String), []);
    } finally {
      process.off('unhandledRejection', record);
    }
  });

  for (const collect of [false, true]) {
    it(`a longpoll _changes whose headers arrived ends within ${ABORT_BOUND_MS} ms of the abort${collect ? ', after a collection' : ''}`, async () => {
      const stop = new AbortController();
      const { update_seq } = await db.info();
      const longpoll = db.changes(update_seq, { type: 'never-written' }, { timeoutMs: LONGPOLL_MS, signal: stop.signal }).then(
        () => 'answered',
        (error: unknown) => (isMeshError(error, 'ABORTED') ? 'aborted' : `failed: ${String(error)}`),
      );
      // The embedded server sends a waiting longpoll's headers at once; give them time to arrive.
      await new Promise((r) => setTimeout(r, 300));
      if (collect) for (let i = 0; i < 3; i++) collectGarbage();
      const abortedAt = performance.now();
      stop.abort();
      const outcome = await longpoll;
      const tookMs = performance.now() - abortedAt;
      assert.equal(outcome, 'aborted');
      assert.ok(tookMs < ABORT_BOUND_MS, `the longpoll ended ${tookMs.toFixed(0)} ms after its abort (bound ${ABORT_BOUND_MS} ms)`);
    });
  }
});
