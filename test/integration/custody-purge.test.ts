/**
 * Custody and `mesh purge` across two real embedded servers (child processes, with accounts) and
 * the coordinator's replication between them: modane (the DAQ, its own server) and lyon and kit
 * (agents on the other server). lyon's proc0 and kit's proc1 copy each raw file (`custody: true`);
 * their agents (real Agent objects, `--once` passes, the steps as child processes) re-read the
 * copies and record them; `mesh purge` at modane reads modane's server only.
 *
 * Proven: no deletion with one copy fewer than asked; none with a copy whose checksum differs,
 * with a source file changed after cataloguing, or with custody only on the other server (not
 * replicated yet); deletion with enough copies (the file's own or its run document's archive),
 * recorded in the document before the file goes; a purge recorded but not done is finished by
 * the next run; forged custody or purge records are refused by the server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../agents/agent.js';
import { ingestDirectory } from '../../agents/ingest.js';
import { type PurgeSummary, purgeDaqBuffer } from '../../agents/purge.js';
import { formatPurgeSummary } from '../../cli/commands/purge.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { AlertTracker } from '../../coordinator/alerts.js';
import { ReplicationMonitor, replicationId } from '../../coordinator/replication.js';
import { type CoordinatorContext, coordinatorRound } from '../../coordinator/round.js';
import { formatBytes } from '../../core/bytes.js';
import { sha256File } from '../../core/checksum.js';
import { type CustodyRecord, type PurgedRecord, custodyOf, purgedOf, runDocumentId } from '../../core/custody.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { recordPurge } from '../../store/custody.js';
import { Database } from '../../store/database.js';
import { removeJob } from '../../store/replication.js';
import { testFolder } from '../support/folders.js';
import { uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, runMesh, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const secret = () => randomBytes(12).toString('hex');
const ADMIN = { modane: secret(), lyon: secret() };
const ACCOUNTS = {
  coord: { password: secret(), roles: ['mesh-coordinator'] },
  'modane-agent': { password: secret(), roles: ['mesh-agent:modane'] },
  'lyon-agent': { password: secret(), roles: ['mesh-agent:lyon'] },
  'kit-agent': { password: secret(), roles: ['mesh-agent:kit'] },
};
type Account = keyof typeof ACCOUNTS;
const REPLICATION_ENV = {
  MESH_MODANE_REPLICATION_USER: 'coord',
  MESH_MODANE_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
  MESH_LYON_REPLICATION_USER: 'coord',
  MESH_LYON_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
};
const RUN = 'lg23b002';
const HOUR = 3_600_000;

/** kit's copy program: a faithful copy, except a flipped first byte for file 1 and a failure for file 5. */
const KIT_COPY = `
const { readFileSync, writeFileSync } = require('node:fs');
const [, , from, to, n] = process.argv;
if (Number(n) === 5) { console.error('kit refuses file 5'); process.exit(1); }
const data = readFileSync(from);
if (Number(n) === 1) data[0] ^= 0xff;
writeFileSync(to, data);
`;

describe('custody and mesh purge: two servers, real replication', function () {
  this.timeout(240_000);
  let modaneServer: ServerProcess;
  let lyonServer: ServerProcess;
  const savedEnv: Record<string, string | undefined> = {};

  before(async () => {
    for (const [key, value] of Object.entries(REPLICATION_ENV)) {
      savedEnv[key] = process.env[key];
      process.env[key] = value;
    }
    const env = { MESH_MODANE_USER: 'admin', MESH_MODANE_PASSWORD: ADMIN.modane, MESH_LYON_USER: 'admin', MESH_LYON_PASSWORD: ADMIN.lyon };
    [modaneServer, lyonServer] = await Promise.all([startServerProcess({ site: 'modane', env }), startServerProcess({ site: 'lyon', env })]);
    for (const [server, site] of [
      [modaneServer, 'modane'],
      [lyonServer, 'lyon'],
    ] as const) {
      const users = new Database({ url: server.url, database: '_users', credentials: { user: 'admin', password: ADMIN[site] } });
      for (const [name, account] of Object.entries(ACCOUNTS))
        await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles: account.roles, password: account.password });
    }
  });
  after(async () => {
    for (const [key, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    await Promise.all([modaneServer?.stop(), lyonServer?.stop()]);
    await stopAllServerProcesses();
  });

  interface Mesh {
    config: MeshConfig;
    dir: string;
    raw: Record<string, unknown>;
    ctx: CoordinatorContext;
    monitor: ReplicationMonitor;
    /** The database on `server`'s server as `account`. */
    as(account: Account | 'admin', server: 'modane' | 'lyon'): Database;
  }

  async function makeMesh(alerts: Record<string, unknown> = {}): Promise<Mesh> {
    const dir = testFolder('mesh-custody-');
    for (const sub of ['daq', 'lyon/raw', 'kit/raw', 'logs']) await mkdir(join(dir, sub), { recursive: true });
    await writeFile(join(dir, 'kit-copy.cjs'), KIT_COPY);
    const raw = {
      database: uniqueDatabase('custody'),
      doc_type: 'daqdocument',
      sites: {
        modane: { server: modaneServer.url, reachable: false, long_running: true, may_run: [], log_dir: join(dir, 'logs', 'modane') },
        lyon: {
          server: lyonServer.url,
          reachable: true,
          long_running: false,
          may_run: ['proc0'],
          log_dir: join(dir, 'logs', 'lyon'),
          storage: join(dir, 'lyon'),
        },
        kit: { server: lyonServer.url, reachable: true, long_running: true, may_run: ['proc1'], log_dir: join(dir, 'logs', 'kit'), storage: join(dir, 'kit') },
      },
      ingest: { site: 'modane', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: [
        {
          name: 'proc0',
          site: 'lyon',
          run: ['cp', '--', '{file}', '{out}'],
          out: join(dir, 'lyon', 'raw', '{run_name}_{file_number}'),
          custody: true,
          lease_s: 60,
        },
        {
          name: 'proc1',
          site: 'kit',
          run: [process.execPath, join(dir, 'kit-copy.cjs'), '{file}', '{out}', '{file_number}'],
          out: join(dir, 'kit', 'raw', '{run_name}_{file_number}'),
          custody: true,
          max_attempts: 1,
          lease_s: 60,
        },
      ],
      coordinator: { site: 'modane', interval_s: 1 },
      agent: { sweep_s: 1, heartbeat_s: 5, retry_base_s: 1, retry_cap_s: 5, grace_s: 5 },
      alerts,
    };
    await writeFile(join(dir, 'mesh.json'), JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, join(dir, 'mesh.json'));
    const admin = (site: string, database?: string) =>
      new Database({
        url: config.sites[site].server,
        database: database ?? config.database,
        credentials: { user: 'admin', password: config.sites[site].server === modaneServer.url ? ADMIN.modane : ADMIN.lyon },
        timeoutMs: 10_000,
      });
    const as = (account: Account | 'admin', server: 'modane' | 'lyon') =>
      account === 'admin'
        ? admin(server)
        : new Database({
            url: config.sites[server].server,
            database: config.database,
            credentials: { user: account, password: ACCOUNTS[account].password },
            timeoutMs: 10_000,
          });
    return {
      config,
      dir,
      raw,
      ctx: { config, open: (site, database) => admin(site.name, database), logger: silentLogger(), by: 'coordinator/modane' },
      monitor: new ReplicationMonitor({ intervalMs: 1000, stallAfterMs: 30_000 }),
      as,
    };
  }

  /** Raw DAQ files with their `.closed` markers, catalogued by modane's agent account as closed two hours ago. */
  async function ingest(mesh: Mesh, numbers: number[]): Promise<void> {
    const daq = join(mesh.dir, 'daq');
    for (const n of numbers) {
      const name = `${RUN}_${String(n).padStart(3, '0')}`;
      await writeFile(join(daq, name), randomBytes(64 * 1024 + n));
      await writeFile(join(daq, `${name}.closed`), '');
    }
    const report = await ingestDirectory(daq, {
      db: mesh.as('modane-agent', 'modane'),
      docType: mesh.config.doc_type,
      ingest: mesh.config.ingest,
      stepNames: mesh.config.steps.map((s) => s.name),
      site: 'modane',
      now: () => new Date(Date.now() - 2 * HOUR),
    });
    assert.equal(report.failed.length, 0, JSON.stringify(report.failed));
  }

  /** One `mesh agent --site S --once` pass, in process, with the site's own account on lyon's server. */
  async function oncePass(mesh: Mesh, site: 'lyon' | 'kit'): Promise<Agent> {
    const agent = new Agent(
      {
        config: mesh.config,
        site: mesh.config.sites[site],
        name: `${site}-once-${secret().slice(0, 6)}`,
        host: hostname(),
        db: mesh.as(`${site}-agent`, 'lyon'),
        logger: silentLogger(),
        steps: mesh.config.steps.filter((s) => s.site === site),
        now: () => new Date(),
      },
      { concurrency: 2, once: true },
    );
    await agent.run();
    return agent;
  }

  const id = (n: number) => `run_${RUN}_${String(n).padStart(3, '0')}`;
  const docOn = (mesh: Mesh, server: 'modane' | 'lyon', n: number) => mesh.as('admin', server).get<DaqDocument>(id(n)) as Promise<DaqDocument>;
  const sites = (doc: DaqDocument | undefined) => (doc ? custodyOf(doc).map((r) => r.site) : []).sort();
  const rawFile = (mesh: Mesh, n: number) => join(mesh.dir, 'daq', `${RUN}_${String(n).padStart(3, '0')}`);

  async function purge(mesh: Mesh, copies: number, dryRun = false): Promise<PurgeSummary> {
    const summary = await purgeDaqBuffer(
      { config: mesh.config, site: mesh.config.sites.modane, db: mesh.as('modane-agent', 'modane'), by: 'modane/purge-test', logger: silentLogger() },
      { copies, closedBefore: new Date(Date.now() - HOUR), dryRun, now: () => new Date() },
    );
    assert.ok(formatPurgeSummary(summary, 'modane').includes('purge at modane'));
    return summary;
  }

  /** Waits until modane's server shows, for each file number, custody records of exactly these sites. */
  function replicatedCustody(mesh: Mesh, expected: Record<number, string[]>): Promise<unknown> {
    return waitFor(
      `custody ${JSON.stringify(expected)} on modane's server`,
      async () => {
        for (const [n, want] of Object.entries(expected)) if (sites(await docOn(mesh, 'modane', Number(n))).join() !== want.join()) return false;
        return true;
      },
      30_000,
    );
  }

  it('deletes only with N agreeing copies on its own server, recorded first; holds back and lists the rest', async () => {
    const mesh = await makeMesh();
    await coordinatorRound(mesh.ctx, mesh.monitor, 1);
    await ingest(mesh, [0, 1, 2, 3, 5]);
    await waitFor('the documents on lyon', async () => (await Promise.all([0, 1, 2, 3, 5].map((n) => docOn(mesh, 'lyon', n)))).every(Boolean), 30_000);

    // lyon's pass: proc0 copies every file and its agent verifies the copies.
    const lyon = await oncePass(mesh, 'lyon');
    assert.equal(lyon.custody.verified, 5);
    const atLyon = await docOn(mesh, 'lyon', 0);
    const record = custodyOf(atLyon)[0];
    assert.deepEqual(
      { site: record.site, step: record.step, file: record.file, sha256: record.sha256, size: record.size_in_bytes, account: record.account },
      {
        site: 'lyon',
        step: 'proc0',
        file: join(mesh.dir, 'lyon', 'raw', `${RUN}_000`),
        sha256: atLyon.checksum?.sha256,
        size: atLyon.size_in_bytes,
        account: 'lyon-agent',
      },
    );
    await replicatedCustody(mesh, { 0: ['lyon'], 1: ['lyon'], 2: ['lyon'], 3: ['lyon'], 5: ['lyon'] });

    // One copy: with --copies 2 nothing goes, with --copies 1 everything would (dry run).
    const short = await purge(mesh, 2);
    assert.deepEqual([short.deleted.files, short.held['too few copies']?.files], [0, 5]);
    assert.match(short.held['too few copies']?.examples[0].detail ?? '', /^1 of 2 \(lyon\)$/);
    const wouldAll = await purge(mesh, 1, true);
    assert.deepEqual([wouldAll.deleted.files, wouldAll.examined], [5, 5]);
    for (const n of [0, 1, 2, 3, 5]) assert.ok(existsSync(rawFile(mesh, n)), `file ${n} was deleted`);
    assert.equal(purgedOf(await docOn(mesh, 'modane', 0)), undefined, 'a dry run recorded a purge');

    // kit's pass: a bad copy of file 1 (recorded as found), no copy of file 5 (its proc1 failed).
    const kit = await oncePass(mesh, 'kit');
    assert.deepEqual([kit.custody.verified, kit.custody.disagreeing], [3, 1]);
    const badCopy = custodyOf(await docOn(mesh, 'lyon', 1)).find((r) => r.site === 'kit') as CustodyRecord;
    assert.equal(badCopy.sha256, await sha256File(join(mesh.dir, 'kit', 'raw', `${RUN}_001`)));
    assert.notEqual(badCopy.sha256, (await docOn(mesh, 'lyon', 1)).checksum?.sha256);
    // File 5's second copy: kit's archive of the run, in the run document (written by the coordinator, as a replicated one would be).
    const five = await docOn(mesh, 'modane', 5);
    const archive = {
      site: 'kit',
      step: 'archive',
      file: '/tape/lg23b002.tar',
      sha256: 'f'.repeat(64),
      size_in_bytes: 1,
      verified_at: new Date().toISOString(),
      account: 'kit-agent',
    };
    await mesh.as('coord', 'modane').put({
      _id: runDocumentId(RUN),
      type: 'daqrun',
      run_name: RUN,
      custody: [
        {
          ...archive,
          members: [
            { doc_id: id(5), sha256: five.checksum?.sha256 },
            { doc_id: id(3), sha256: five.checksum?.sha256 },
          ],
        },
      ],
    });
    await replicatedCustody(mesh, { 0: ['kit', 'lyon'], 1: ['kit', 'lyon'], 2: ['kit', 'lyon'], 3: ['kit', 'lyon'], 5: ['lyon'] });

    // File 2 changes on the DAQ disk after it was catalogued and copied (same size).
    const two = await readFile(rawFile(mesh, 2));
    two[100] ^= 0x01;
    await writeFile(rawFile(mesh, 2), two);

    // File 4 arrives while lyon → modane is cut: its custody exists on lyon's server only.
    const replicator = mesh.ctx.open(mesh.config.sites.modane, '_replicator');
    await removeJob(replicator, replicationId(mesh.config.database, 'lyon', 'modane'));
    await ingest(mesh, [4]);
    await waitFor('file 4 on lyon', () => docOn(mesh, 'lyon', 4), 30_000);
    await oncePass(mesh, 'lyon');
    await oncePass(mesh, 'kit');
    assert.deepEqual(sites(await docOn(mesh, 'lyon', 4)), ['kit', 'lyon']);

    const run = await purge(mesh, 2);
    const heldIds = (reason: keyof PurgeSummary['held']) => run.held[reason]?.examples.map((e) => e.doc) ?? [];
    assert.equal(run.deleted.files, 2, formatPurgeSummary(run, 'modane'));
    assert.deepEqual(heldIds('a copy disagrees'), [id(1), id(3)], 'file 1: kit copy; file 3: the archive lists it with the wrong sha256');
    assert.deepEqual(heldIds('changed on disk'), [id(2)]);
    assert.deepEqual(heldIds('too few copies'), [id(4)]);
    assert.match(run.held['too few copies']?.examples[0].detail ?? '', /^0 of 2$/);
    for (const n of [0, 5]) {
      assert.equal(existsSync(rawFile(mesh, n)), false, `file ${n} is still on disk`);
      const purged = purgedOf(await docOn(mesh, 'modane', n)) as PurgedRecord;
      assert.deepEqual(
        [purged.site, purged.user, purged.file, purged.custody.map((r) => r.site).sort()],
        ['modane', 'modane-agent', rawFile(mesh, n), ['kit', 'lyon']],
      );
    }
    for (const n of [1, 2, 3, 4]) assert.ok(existsSync(rawFile(mesh, n)), `file ${n} was deleted`);
    assert.equal(sites(await docOn(mesh, 'modane', 4)).length, 0, 'the test meant custody to be on lyon only');

    // Replication back: file 4's proof arrives. A purge recorded but not done (a crash between
    // the two) is finished by the next run.
    await coordinatorRound(mesh.ctx, mesh.monitor, 2);
    await replicatedCustody(mesh, { 4: ['kit', 'lyon'] });
    const four = await docOn(mesh, 'modane', 4);
    const recorded = await recordPurge(mesh.as('modane-agent', 'modane'), four, {
      at: new Date().toISOString(),
      by: 'modane/purge-crashed',
      user: 'modane-agent',
      site: 'modane',
      file: four.file,
      custody: custodyOf(four),
    });
    assert.equal(recorded.kind, 'written');
    assert.ok(existsSync(rawFile(mesh, 4)));
    const next = await purge(mesh, 2);
    assert.deepEqual([next.finished.files, next.already, next.deleted.files], [1, 2, 0]);
    assert.equal(existsSync(rawFile(mesh, 4)), false);
  });

  it('the server refuses forged custody and purge records, with the agents’ own credentials', async () => {
    const mesh = await makeMesh();
    await coordinatorRound(mesh.ctx, mesh.monitor, 1);
    await ingest(mesh, [0]);
    await waitFor('the document on lyon', () => docOn(mesh, 'lyon', 0), 30_000);
    await oncePass(mesh, 'lyon');
    const doc = await docOn(mesh, 'lyon', 0);
    const lyonRecord = custodyOf(doc)[0];
    const forged = { ...lyonRecord, site: 'kit', step: 'proc1', account: 'lyon-agent' };
    const refused = async (account: Account, server: 'modane' | 'lyon', next: DaqDocument, reason: RegExp) => {
      const current = await docOn(mesh, server, 0);
      await assert.rejects(
        mesh.as(account, server).put({ ...next, _rev: current._rev }),
        (e: { code?: string; reason?: string }) => e.code === 'FORBIDDEN' && reason.test(e.reason ?? ''),
        `${account} wrote ${JSON.stringify(next).slice(0, 200)}`,
      );
    };
    await refused('lyon-agent', 'lyon', { ...doc, custody: [lyonRecord, forged] }, /"lyon-agent" may not record custody for site "kit": its agents do/);
    await refused('lyon-agent', 'lyon', { ...doc, custody: [] }, /custody entries cannot be removed/);
    await refused('kit-agent', 'lyon', { ...doc, custody: [{ ...lyonRecord, sha256: '0'.repeat(64) }] }, /custody entry 0 cannot change/);
    const purged = { at: new Date().toISOString(), by: 'lyon/x', user: 'lyon-agent', site: 'modane', file: doc.file, custody: [lyonRecord] };
    await refused('lyon-agent', 'lyon', { ...doc, purged }, /"lyon-agent" may not record a purge at "modane": the agents of the ingest site do/);
    // modane's agent may record the purge, once; nobody may change it after.
    await replicatedCustody(mesh, { 0: ['lyon'] });
    const atModane = await docOn(mesh, 'modane', 0);
    await mesh.as('modane-agent', 'modane').put({ ...atModane, purged: { ...purged, by: 'modane/purge', user: 'modane-agent' } });
    await refused(
      'modane-agent',
      'modane',
      { ...atModane, purged: { ...purged, by: 'modane/purge', user: 'modane-agent', at: '2030-01-01T00:00:00.000Z' } },
      /purged is written once and cannot change/,
    );
    await refused('coord', 'modane', { ...atModane, purged: undefined } as DaqDocument, /purged is written once and cannot change/);
    // A purge record alone deletes nothing: the file goes only with the copies the rule asks for.
    const after = await purge(mesh, 2);
    assert.deepEqual([after.finished.files, after.held['too few copies']?.examples[0].detail], [0, 'recorded as purged, not deleted: 1 of 2 (lyon)']);
    assert.ok(existsSync(rawFile(mesh, 0)));
    // The forged record was never stored: lyon's document still has lyon's record alone.
    assert.deepEqual(sites(await docOn(mesh, 'lyon', 0)), ['lyon']);
  });

  it('raises daq_buffer_low from the free space mesh ingest measured, naming the bytes purge could free, and clears it', async () => {
    // The test machine's free space is not the test's to change: the threshold moves instead,
    // above what the DAQ measured (raised), then below it (cleared).
    const mesh = await makeMesh({ daq_free_min: '5PB' });
    await coordinatorRound(mesh.ctx, mesh.monitor, 1);
    await ingest(mesh, [0, 1]);
    await waitFor('the documents on lyon', async () => (await docOn(mesh, 'lyon', 0)) && (await docOn(mesh, 'lyon', 1)), 30_000);
    await oncePass(mesh, 'lyon');
    await replicatedCustody(mesh, { 0: ['lyon'], 1: ['lyon'] });
    // `mesh ingest` as a process, with modane's agent account: it measures the buffer and publishes it in its heartbeat.
    const env = { MESH_MODANE_USER: 'modane-agent', MESH_MODANE_PASSWORD: ACCOUNTS['modane-agent'].password };
    const ran = await runMesh(['--config', join(mesh.dir, 'mesh.json'), 'ingest', join(mesh.dir, 'daq'), '--site', 'modane'], env, 60_000);
    assert.equal(ran.status, 0, ran.stderr);
    // The command itself: bad options exit 2 with the reason; the default is a dry run.
    const purgeCli = (...args: string[]) => runMesh(['--config', join(mesh.dir, 'mesh.json'), 'purge', ...args], env, 60_000);
    for (const [args, reason] of [
      [['--site', 'lyon'], /site lyon is not the DAQ site/],
      [['--site', 'modane', '--copies', '3'], /--copies 3 can never be met: there are 2 sites other than modane/],
      [['--site', 'modane', '--dry-run', '--yes'], /--dry-run and --yes contradict each other/],
      [['--site', 'modane', '--older-than', '2 days'], /"2 days" is not a duration/],
    ] as const) {
      const bad = await purgeCli(...args);
      assert.equal(bad.status, 2, `${args.join(' ')}: ${bad.stderr}`);
      assert.match(bad.stderr, reason);
    }
    const dry = await purgeCli('--site', 'modane', '--older-than', '1h');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /^purge at modane: dry run, nothing deleted \(run again with --yes to delete\)\n/);
    assert.match(dry.stdout, /would delete 2 files, 131 kB would be freed/);
    assert.ok(existsSync(rawFile(mesh, 0)) && existsSync(rawFile(mesh, 1)));

    const hookOut = join(mesh.dir, 'hook.jsonl');
    const hookScript = join(mesh.dir, 'hook.cjs');
    await writeFile(
      hookScript,
      "let s='';process.stdin.on('data',(d)=>{s+=d});process.stdin.on('end',()=>require('node:fs').appendFileSync(process.argv[2],s.trim()+'\\n'));",
    );
    const tracker = new AlertTracker({ logger: silentLogger(), hook: [process.execPath, hookScript, hookOut], hookTimeoutMs: 10_000 });
    const raised = await coordinatorRound({ ...mesh.ctx, alerts: tracker }, mesh.monitor, 2);
    const alert = raised.alerts.find((a) => a.kind === 'daq_buffer_low');
    assert.ok(alert, JSON.stringify(raised.alerts));
    const bytes = (await docOn(mesh, 'modane', 0)).size_in_bytes + (await docOn(mesh, 'modane', 1)).size_in_bytes;
    assert.match(
      alert.message,
      new RegExp(`^modane's DAQ buffer ${join(mesh.dir, 'daq')} has .* free of .*, below alerts.daq_free_min 5.00 PB \\(measured \\d+s ago by modane/ingest-`),
    );
    assert.match(alert.message, new RegExp(`mesh purge could free about ${formatBytes(bytes).replace('.', '\\.')} now`));
    assert.match(alert.action, /mesh purge --site modane/);

    const lowered = parseMeshConfig({ ...mesh.raw, alerts: { daq_free_min: '1B' } }, join(mesh.dir, 'mesh.json'));
    const cleared = await coordinatorRound({ ...mesh.ctx, config: lowered, alerts: tracker }, mesh.monitor, 3);
    assert.equal(cleared.alerts.filter((a) => a.kind === 'daq_buffer_low').length, 0);
    await tracker.idle();
    const events = (await readFile(hookOut, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kind: string; state: string });
    assert.deepEqual(
      events.filter((e) => e.kind === 'daq_buffer_low').map((e) => e.state),
      ['raised', 'cleared'],
    );
  });
});
