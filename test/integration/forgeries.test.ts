/**
 * The forgery corpus (test/corpus/forgeries.json) tried with real accounts against the embedded
 * server over HTTP: every write path, every role. The server, not the client, must refuse.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'mocha';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { Database } from '../../store/database.js';
import type { DaqDocument } from '../../core/document.js';
import { agentRole } from '../../core/roles.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { readCorpus } from '../support/corpus.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

type Json = Record<string, unknown>;
type Writer = 'admin' | 'operator' | 'reader' | 'coordinator' | 'lyon' | 'lyon2' | 'modane';
type Path = 'put' | 'bulk' | 'recreate' | 'branch';
interface ForgeryEntry {
  id: string;
  what: string;
  from: 'closed' | 'good' | 'running' | 'failed' | 'bad';
  writer: Writer;
  set?: Json;
  history?: 'empty' | 'drop' | 'rewrite0' | { append: { to: string; by: string } };
  paths: Path[];
  expect: string;
}

const ADMIN_PASSWORD = randomBytes(12).toString('hex');
const ACCOUNTS: Record<Exclude<Writer, 'admin'>, { name: string; roles: string[] }> = {
  operator: { name: 'op', roles: ['mesh-operator'] },
  reader: { name: 'reader', roles: ['mesh-reader'] },
  coordinator: { name: 'coord', roles: ['mesh-coordinator'] },
  lyon: { name: 'lyon-agent', roles: [agentRole('lyon')] },
  lyon2: { name: 'lyon-agent-2', roles: [agentRole('lyon')] },
  modane: { name: 'modane-agent', roles: [agentRole('modane')] },
};

/** Sets a dotted path; null removes the field. */
function setPath(doc: Json, path: string, value: unknown): void {
  const keys = path.split('.');
  let at = doc;
  for (const key of keys.slice(0, -1)) {
    at[key] = { ...(at[key] as Json) };
    at = at[key] as Json;
  }
  if (value === null) delete at[keys[keys.length - 1]];
  else at[keys[keys.length - 1]] = value;
}

function forge(stored: DaqDocument, entry: ForgeryEntry, writerName: string | null): Json {
  const doc: Json = structuredClone(stored) as unknown as Json;
  for (const [path, value] of Object.entries(entry.set ?? {})) setPath(doc, path, value);
  const history = stored.history;
  if (entry.history === 'empty') doc.history = [];
  else if (entry.history === 'drop') delete doc.history;
  else if (entry.history === 'rewrite0') doc.history = [{ ...history[0], by: 'someone/else' }, ...history.slice(1)];
  else if (entry.history)
    doc.history = [
      ...history,
      { at: new Date().toISOString(), from: stored.status, to: entry.history.append.to, by: entry.history.append.by, user: writerName },
    ];
  return doc;
}

describe('forgeries (test/corpus/forgeries.json) refused by the server, with real accounts', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  let config: MeshConfig;
  const corpus = readCorpus<ForgeryEntry>('forgeries.json');
  /** Every account's password, made from the admin's random one (nothing committed). */
  const passwordOf = (name: string) => (name === 'admin' ? ADMIN_PASSWORD : `pw-${name}-${ADMIN_PASSWORD}`);
  const open = (writer: Writer, database: string) => {
    const user = writer === 'admin' ? 'admin' : ACCOUNTS[writer].name;
    return new Database({ url: server.url, database, credentials: { user, password: passwordOf(user) } });
  };

  before(async () => {
    server = await startServerProcess({ env: { MESH_TEST_USER: 'admin', MESH_TEST_PASSWORD: ADMIN_PASSWORD } });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN_PASSWORD } });
    for (const account of Object.values(ACCOUNTS)) {
      await users.put({ _id: `org.couchdb.user:${account.name}`, type: 'user', name: account.name, roles: account.roles, password: passwordOf(account.name) });
    }
    config = parseMeshConfig(
      {
        database: 'forgeries',
        doc_type: 'daqdocument',
        sites: {
          modane: { server: server.url, reachable: false, long_running: true, log_dir: '/tmp/unused', may_run: ['proc0'] },
          lyon: { server: server.url, reachable: true, long_running: false, log_dir: '/tmp/unused', may_run: ['proc1'] },
        },
        ingest: { site: 'modane', quiet_s: 1 },
        steps: [
          { name: 'proc0', site: 'modane', run: ['/bin/true'], out: '/tmp/unused/{run_name}_{file_number}', timeout_s: 60, max_attempts: 2, lease_s: 60 },
          { name: 'proc1', site: 'lyon', run: ['/bin/true'], out: '/tmp/unused/{run_name}_{file_number}.p1', timeout_s: 60, max_attempts: 2, lease_s: 60 },
        ],
      },
      'forgeries.json',
    );
  });
  after(() => server?.stop());

  /** A fresh database holding one document in state `from`, made by the state machine with the right accounts. */
  async function stored(database: string, from: ForgeryEntry['from']): Promise<DaqDocument> {
    const admin = open('admin', database);
    await admin.ensure();
    await pushDesign(admin, designDocument(config));
    await pushSecurity(admin, Object.keys(config.sites));
    const ingest = open('modane', database);
    let doc: DaqDocument = {
      _id: 'run_lg23b002_000',
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: 0,
      file: '/data/lg23b002_000',
      size_in_bytes: 1,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: [{ at: new Date().toISOString(), from: null, to: 'closed', by: 'modane/ingest', user: 'modane-agent' }],
    };
    doc = { ...doc, _rev: await ingest.put(doc) };
    const apply = async (writer: Writer, event: MeshEvent) => {
      const result = transition(doc, { ...event, user: ACCOUNTS[writer as Exclude<Writer, 'admin'>].name }, new Date(), config);
      if (!result.ok) throw result.error;
      doc = { ...result.doc, _rev: await open(writer, database).put(result.doc) };
    };
    const lease = new Date(Date.now() + 600_000).toISOString();
    if (from === 'closed') return doc;
    await apply('modane', { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'm1', host: 'daq', lease_until: lease });
    await apply('modane', { type: 'succeed', step: 'proc0', agent: 'm1', result: { exit_code: 0, duration_s: 1, file: '/sps/raw/lg23b002_000' } });
    if (from === 'good') return doc;
    if (from === 'bad') {
      await apply('operator', { type: 'mark_bad', by: 'operator/op', reason: 'test' });
      return doc;
    }
    await apply('lyon', { type: 'claim', step: 'proc1', mode: 'run', site: 'lyon', agent: 'l1', host: 'farm', lease_until: lease });
    if (from === 'running') return doc;
    await apply('lyon', { type: 'fail', step: 'proc1', agent: 'l1', reason: 'exit 1', retry_after: new Date(0).toISOString() });
    await apply('lyon', { type: 'claim', step: 'proc1', mode: 'run', site: 'lyon', agent: 'l1', host: 'farm', lease_until: lease });
    await apply('lyon', { type: 'fail', step: 'proc1', agent: 'l1', reason: 'exit 1', retry_after: new Date(0).toISOString() });
    assert.equal(doc.status, 'proc1 failed');
    return doc;
  }

  /** Writes `body` by `path`; the server's answer as [accepted, reason]. */
  async function write(db: Database, admin: Database, path: Path, body: Json, storedDoc: DaqDocument): Promise<[boolean, string]> {
    const answer = (row: { error?: string; reason?: string }): [boolean, string] => [!row.error, `${row.error ?? ''} ${row.reason ?? ''}`];
    if (path === 'bulk') return answer((await db.bulk([body]))[0]);
    if (path === 'branch') {
      const rev = randomBytes(16).toString('hex');
      const { _rev: _r, ...rest } = body;
      const res = await fetch(`${server.url}/${db.name}/_bulk_docs`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Basic ${Buffer.from(`${db.user}:${passwordOf(db.user as string)}`).toString('base64')}`,
        },
        body: JSON.stringify({
          new_edits: false,
          docs: [{ ...rest, _rev: `9-${rev}`, _revisions: { start: 9, ids: [rev, randomBytes(16).toString('hex')] } }],
        }),
      });
      const rows = (await res.json()) as Array<{ error?: string; reason?: string }> | { error?: string; reason?: string };
      return Array.isArray(rows) ? (rows.length === 0 ? [true, ''] : answer(rows[0])) : answer(rows);
    }
    if (path === 'recreate') {
      await admin.bulk([{ _id: storedDoc._id, _rev: storedDoc._rev, _deleted: true }]);
      const { _rev: _r, ...rest } = body;
      body = rest;
    }
    try {
      await db.put(body as { _id: string });
      return [true, ''];
    } catch (error) {
      return [false, String((error as Error).message)];
    }
  }

  for (const entry of corpus.entries) {
    for (const path of entry.paths) {
      it(`${entry.id} by ${entry.writer} (${path}): ${entry.what}`, async () => {
        const database = `forgeries-${entry.id.replace(/_/g, '-')}-${path}`;
        const storedDoc = await stored(database, entry.from);
        const db = open(entry.writer, database);
        const admin = open('admin', database);
        const [accepted, reason] = await write(db, admin, path, forge(storedDoc, entry, db.user), storedDoc);
        if (entry.expect === 'accepted') {
          assert.ok(accepted, `refused: ${reason}`);
          return;
        }
        assert.ok(!accepted, 'the server accepted the forgery');
        assert.match(reason, new RegExp(entry.expect), reason);
        const now = await admin.get<DaqDocument>(storedDoc._id, { conflicts: true });
        if (path === 'recreate') assert.equal(now, undefined, 'the document stays deleted');
        else assert.deepEqual(now, storedDoc, 'the stored document is unchanged');
      });
    }
  }
});
