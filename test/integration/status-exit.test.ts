/**
 * `mesh status` as a cron job reads it (issue 13, §4): the real command against embedded servers
 * in this process. The worst state comes first, every file is counted once however many servers
 * hold it, a failed file says its stderr and the command to retry it, and the exit status is
 * 0 all well, 1 a file failed or an alert holds, 2 bad input, 3 a server could not be read.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { transition } from '../../core/state.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { runMesh, uniqueDatabase } from '../support/mesh.js';

const PATTERN = '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$';
const ADMIN = { user: 'admin', password: randomBytes(18).toString('base64url') };

/** A port nothing listens on (free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

describe('mesh status: the summary first, each file once, and an exit status a cron job can use', function () {
  this.timeout(60_000);
  const servers: EmbeddedServer[] = [];
  let dir: string;
  let alpha: EmbeddedServer;
  let beta: EmbeddedServer;

  before(async () => {
    dir = testFolder('mesh-status-exit-');
    alpha = await startEmbeddedServer({ site: 'alpha', dataDir: join(dir, 'alpha'), logger: silentLogger() });
    beta = await startEmbeddedServer({ site: 'beta', dataDir: join(dir, 'beta'), logger: silentLogger() });
    servers.push(alpha, beta);
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  /** A mesh of the sites given (proc0 on the first, proc1 on the last), its design pushed to every server that answers. */
  async function mesh(sites: Record<string, string>, extra: Record<string, unknown> = {}): Promise<{ config: MeshConfig; file: string }> {
    const names = Object.keys(sites);
    const raw = {
      database: uniqueDatabase('exit'),
      doc_type: 'daqdocument',
      sites: Object.fromEntries(names.map((n) => [n, { server: sites[n], reachable: true, long_running: true, log_dir: join(dir, 'logs') }])),
      ingest: { site: names[0], pattern: PATTERN, quiet_s: 600 },
      steps: ['proc0', 'proc1'].map((name, i) => ({
        name,
        site: i === 0 ? names[0] : names[names.length - 1],
        run: ['true'],
        out: join(dir, 'out', name, '{run_name}_{file_number}'),
        max_attempts: 1,
      })),
      ...extra,
    };
    const file = join(dir, `${raw.database}.json`);
    await writeFile(file, JSON.stringify(raw, null, 2));
    return { config: parseMeshConfig(raw, file), file };
  }

  async function database(config: MeshConfig, server: EmbeddedServer): Promise<Database> {
    const db = new Database({ url: server.url, database: config.database });
    await db.ensure();
    await pushDesigns(db, config);
    return db;
  }

  /** File `n` of run lg23b000 closed `closedAgoS` ago, taken through `events` by the real state machine. */
  function file(config: MeshConfig, n: number, events: Array<'done0' | 'done1' | 'fail1'>, closedAgoS = 5): DaqDocument {
    const closed = new Date(Date.now() - closedAgoS * 1000).toISOString();
    let doc: DaqDocument = {
      _id: `run_lg23b000_${String(n).padStart(3, '0')}`,
      type: 'daqdocument',
      run_name: 'lg23b000',
      file_number: n,
      file: `/daq/lg23b000_${String(n).padStart(3, '0')}`,
      size_in_bytes: 10,
      date_closed: closed,
      status: 'closed',
      history: [{ at: closed, from: null, to: 'closed', by: 'alpha/ingest' }],
    };
    const apply = (event: Parameters<typeof transition>[1]) => {
      const next = transition(doc, event, new Date(), config);
      if (!next.ok) throw next.error;
      doc = next.doc;
    };
    const lease = new Date(Date.now() + 60_000).toISOString();
    for (const e of events) {
      const step = e === 'done0' ? 'proc0' : 'proc1';
      apply({ type: 'claim', step, mode: 'run', site: 'alpha', agent: 'a1', host: 'h', lease_until: lease });
      if (e === 'fail1')
        apply({
          type: 'fail',
          step,
          agent: 'a1',
          reason: 'exited with 4',
          result: { exit_code: 4, stderr_tail: 'reading the raw file\ndisk on fire' },
          retry_after: new Date().toISOString(),
        });
      else apply({ type: 'succeed', step, agent: 'a1', result: { exit_code: 0, duration_s: 1 } });
    }
    return doc;
  }

  const status = (file: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}) => runMesh(['--config', file, 'status', ...extra], env, 30_000);

  it('0 when all is well, with the summary line first', async () => {
    const { config, file: configFile } = await mesh({ alpha: alpha.url });
    const db = await database(config, alpha);
    await db.bulk([0, 1, 2].map((n) => file(config, n, ['done0', 'done1'])));
    const text = await status(configFile);
    assert.equal(text.status, 0, text.stdout + text.stderr);
    assert.equal(text.stdout.split('\n')[0], 'all well · 3 files');
    const json = await status(configFile, ['--json']);
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as Record<string, unknown> & { summary: { text: string }; exit_status: number };
    // The fields scripts read stay; the new ones are added.
    for (const key of [
      'generated',
      'database',
      'databases',
      'agents',
      'replication',
      'double_claims',
      'flow',
      'alerts',
      'files',
      'failed',
      'in_flight',
      'unreadable',
    ])
      assert.ok(key in parsed, `mesh status --json lacks ${key}`);
    assert.equal(parsed.summary.text, 'all well · 3 files');
    assert.equal(parsed.exit_status, 0);
  });

  it('1 for a failed file: counted once though two servers hold it, with its stderr and the mesh retry command', async () => {
    const { config, file: configFile } = await mesh({ alpha: alpha.url, beta: beta.url });
    const docs = [file(config, 0, ['done0', 'done1']), file(config, 1, ['done0', 'fail1']), file(config, 2, ['done0', 'done1'])];
    // Both servers hold the same three files, as replication leaves them.
    for (const server of [alpha, beta]) await (await database(config, server)).bulk(docs);
    const r = await status(configFile);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0], /^1 failed( · |$)/);
    // One count per file: 3 done for proc0, not 6.
    assert.match(r.stdout, /\n {2}proc0 +3 +0 +0 +0 +0 +alpha\n {2}proc1 +2 +0 +0 +0 +1 +beta\n/);
    assert.match(r.stdout, /^files: 3, each counted once/m);
    const failed = lines.filter((l) => l.includes('run_lg23b000_001 proc1'));
    assert.deepEqual(failed, ['  run_lg23b000_001 proc1: exited with 4 (exit 4), on beta and alpha'], 'one line for the file, naming both servers');
    assert.match(r.stdout, /\n {4}stderr: reading the raw file\n {12}disk on fire\n {4}retry: {2}mesh --config \S+ retry run_lg23b000_001 --step proc1\n/);
    const json = JSON.parse((await status(configFile, ['--json'])).stdout) as {
      failed: Array<{ doc: string; servers: string[] }>;
      files: { steps: Record<string, { done: number }> };
    };
    assert.deepEqual(
      json.failed.map((f) => [f.doc, f.servers]),
      [['run_lg23b000_001', ['beta', 'alpha']]],
    );
    assert.equal(json.files.steps.proc0.done, 3);
  });

  it('1 for an alert with nothing failed (a file late for its target)', async () => {
    const { config, file: configFile } = await mesh({ alpha: alpha.url }, { targets: { proc0: '10m' } });
    const db = await database(config, alpha);
    await db.bulk([file(config, 0, ['done0', 'done1']), file(config, 1, [], 7200)]);
    const r = await status(configFile);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout.split('\n')[0], /proc0 late for its target/);
    assert.match(r.stdout, /^alerts \(\d+\):\n {2}latency_target since/m);
  });

  it('3 when a server could not be read: the one left still counts every file, and the line says which is unreachable', async () => {
    const { config, file: configFile } = await mesh({ alpha: alpha.url, beta: `http://127.0.0.1:${await closedPort()}` });
    const db = await database(config, alpha);
    await db.bulk([0, 1, 2].map((n) => file(config, n, ['done0', 'done1'])));
    for (const json of [[], ['--json']]) {
      const r = await status(configFile, json);
      assert.equal(r.status, 3, `status ${json.join(' ')}: ${r.stdout.slice(0, 400)} ${r.stderr}`);
      if (json.length) assert.equal((JSON.parse(r.stdout) as { files: { steps: Record<string, { done: number }> } }).files.steps.proc1.done, 3);
      else {
        assert.match(r.stdout.split('\n')[0], /^beta unreachable( · |$)/);
        // proc1 is beta's step: its numbers come from alpha's copy, not halved to nothing.
        assert.match(r.stdout, /\n {2}proc1 +3 +0 +0 +0 +0 +alpha\n/);
        assert.match(r.stdout, /beta +http:\/\/127\.0\.0\.1:\d+\/\S+ +UNREACHABLE/);
      }
    }
  });

  it('3 without credentials for a server that wants them: "not authorised: nothing could be read", not empty lists', async () => {
    const guarded = await startEmbeddedServer({ site: 'gamma', dataDir: join(dir, 'gamma'), logger: silentLogger(), admin: ADMIN });
    servers.push(guarded);
    const { config, file: configFile } = await mesh({ gamma: guarded.url });
    // The database exists and is the mesh's (its _security names the sites' roles): without credentials nothing of it is readable.
    const db = new Database({ url: guarded.url, database: config.database, credentials: ADMIN });
    await db.ensure();
    await pushDesigns(db, config);
    await pushSecurity(db, Object.keys(config.sites));
    const r = await status(configFile);
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.equal(r.stdout.split('\n')[0], 'not authorised: nothing could be read (gamma)');
    assert.doesNotMatch(r.stdout, /agents \(0\)|alerts \(0\)|double claims: 0/);
    assert.match(r.stdout, /unknown, no server could be read/);
    assert.ok(!r.stdout.includes(ADMIN.password));
  });

  it('2 for bad input: a bad argument or a config that does not parse', async () => {
    const { file: configFile } = await mesh({ alpha: alpha.url });
    assert.equal((await status(configFile, ['--interval', '0'])).status, 2);
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{"sites": {}}');
    const r = await status(broken);
    assert.equal(r.status, 2, r.stderr);
    const help = await runMesh(['status', '--help']);
    assert.match(
      help.stdout.replace(/\s+/g, ' '),
      /Exit status .*0 all well; 1 a file failed or an alert holds .*2 bad config or argument; 3 a server could not be read/,
    );
  });
});
