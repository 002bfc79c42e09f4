import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { rankLeaves } from '../../coordinator/audit.js';
import type { MeshStatus } from '../../coordinator/status.js';
import { Database } from '../../store/database.js';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { transition } from '../../core/state.js';
import { uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, runMesh, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';
import { testFolder } from '../support/folders.js';
import { historyTo } from '../../core/provenance.js';

const PASSWORDS = { modane: 'modane-secret-4c1f', kit: 'kit-secret-9e07' };
/** Accounts on both servers: the replication jobs log in as the coordinator, claims are written by each site's agent. */
const ACCOUNTS = {
  coord: { password: 'coord-secret-77a0', roles: ['mesh-coordinator'] },
  'modane-agent': { password: 'modane-agent-secret-1b2c', roles: ['mesh-agent:modane'] },
  'kit-agent': { password: 'kit-agent-secret-3d4e', roles: ['mesh-agent:kit'] },
};
const ENV = {
  MESH_MODANE_USER: 'admin',
  MESH_MODANE_PASSWORD: PASSWORDS.modane,
  MESH_KIT_USER: 'admin',
  MESH_KIT_PASSWORD: PASSWORDS.kit,
  MESH_MODANE_REPLICATION_USER: 'coord',
  MESH_MODANE_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
  MESH_KIT_REPLICATION_USER: 'coord',
  MESH_KIT_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
  MESH_LOG_LEVEL: 'info',
};
const SECRETS = [
  ...Object.values(PASSWORDS),
  ACCOUNTS.coord.password,
  ...Object.values(PASSWORDS).map((p) => Buffer.from(`admin:${p}`).toString('base64')),
  Buffer.from(`coord:${ACCOUNTS.coord.password}`).toString('base64'),
];

interface TwoSites {
  configFile: string;
  config: MeshConfig;
  modane: Database;
  kit: Database;
  replicator: { modane: Database; kit: Database };
}

describe('coordinator: two real servers, modane push-only', function () {
  this.timeout(180_000);
  let modaneServer: ServerProcess;
  let kitServer: ServerProcess;

  before(async () => {
    [modaneServer, kitServer] = await Promise.all([startServerProcess({ site: 'modane', env: ENV }), startServerProcess({ site: 'kit', env: ENV })]);
    for (const [server, site] of [
      [modaneServer, 'modane'],
      [kitServer, 'kit'],
    ] as const) {
      const users = open(server.url, site, '_users');
      for (const [name, account] of Object.entries(ACCOUNTS))
        await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles: account.roles, password: account.password });
    }
  });
  after(async () => {
    await Promise.all([modaneServer?.stop(), kitServer?.stop()]);
    await stopAllServerProcesses();
  });

  const open = (url: string, site: 'modane' | 'kit', database: string) =>
    new Database({ url, database, credentials: { user: 'admin', password: PASSWORDS[site] } });
  const asAccount = (url: string, name: keyof typeof ACCOUNTS, database: string) =>
    new Database({ url, database, credentials: { user: name, password: ACCOUNTS[name].password } });

  /** A fresh database and config: modane (reachable: false, may run proc0) and kit (reachable). */
  async function twoSites(): Promise<TwoSites> {
    const dir = testFolder('mesh-coord-');
    const raw = {
      database: uniqueDatabase('coord'),
      doc_type: 'daqdocument',
      sites: {
        modane: { server: modaneServer.url, reachable: false, long_running: true, may_run: ['proc0'], log_dir: join(dir, 'logs', 'modane') },
        // kit may run proc0 too: a double claim needs two sites that may run the step (the assignment moved during a partition).
        kit: { server: kitServer.url, reachable: true, long_running: true, may_run: ['proc0', 'proc1'], log_dir: join(dir, 'logs', 'kit') },
      },
      ingest: { site: 'modane', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: [
        { name: 'proc0', site: 'modane', run: ['true'], out: join(dir, 'out0', '{run_name}_{file_number}'), lease_s: 60 },
        { name: 'proc1', site: 'kit', run: ['true'], out: join(dir, 'out1', '{run_name}_{file_number}'), lease_s: 60 },
      ],
      coordinator: { site: 'modane', interval_s: 1 },
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    return {
      configFile,
      config,
      modane: open(modaneServer.url, 'modane', config.database),
      kit: open(kitServer.url, 'kit', config.database),
      replicator: { modane: open(modaneServer.url, 'modane', '_replicator'), kit: open(kitServer.url, 'kit', '_replicator') },
    };
  }

  async function coordinatorOnce(mesh: TwoSites): Promise<string> {
    const run = await runMesh(['--config', mesh.configFile, 'coordinator', '--once'], ENV, 60_000);
    assert.equal(run.status, 0, run.stderr);
    for (const secret of SECRETS) assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), 'a credential reached the coordinator output');
    return run.stderr;
  }

  /** `_id → _rev` of every document, `_local` ones and (unless asked) the replication markers excepted: those are rewritten every round. */
  async function revisions(db: Database, withMarkers = false): Promise<Record<string, string>> {
    const { rows } = await db.allDocs({});
    return Object.fromEntries(rows.filter((r) => withMarkers || !String(r.id).startsWith('mesh-marker:')).map((r) => [r.id as string, r.value.rev]));
  }

  async function jobIds(db: Database, database: string): Promise<string[]> {
    const { rows } = await db.allDocs({ startkey: `mesh-${database}-`, endkey: `mesh-${database}-\ufff0` });
    return rows.map((r) => r.id as string).sort();
  }

  async function deleteJobs(mesh: TwoSites): Promise<void> {
    for (const id of await jobIds(mesh.replicator.modane, mesh.config.database)) {
      await waitFor(
        `deleting ${id}`,
        async () => {
          const doc = await mesh.replicator.modane.get<{ _rev: string }>(id);
          if (!doc) return true;
          const [row] = await mesh.replicator.modane.bulk([{ _id: id, _rev: doc._rev, _deleted: true }]);
          return !row.error;
        },
        10_000,
      );
    }
  }

  it("creates both jobs in modane's _replicator only, replicates both ways, and a second run writes nothing", async () => {
    const mesh = await twoSites();
    const db = mesh.config.database;
    const logs = await coordinatorOnce(mesh);
    assert.doesNotMatch(logs, /no \/_scheduler\/docs/, 'the embedded server answers /_scheduler/docs');

    assert.deepEqual(await jobIds(mesh.replicator.modane, db), [`mesh-${db}-kit-to-modane`, `mesh-${db}-modane-to-kit`]);
    assert.deepEqual(await jobIds(mesh.replicator.kit, db), [], 'kit holds no job: it cannot reach modane');
    const job = await mesh.replicator.modane.get<{ source: { url: string; headers: { Authorization: string } } }>(`mesh-${db}-kit-to-modane`);
    assert.equal(job?.source.url, `${kitServer.url}/${db}`);
    assert.equal(
      job?.source.headers.Authorization,
      `Basic ${Buffer.from(`coord:${ACCOUNTS.coord.password}`).toString('base64')}`,
      "the job logs in as the coordinator's replication account",
    );

    await mesh.modane.put({ _id: 'mesh:note:from-modane', type: 'mesh-note' });
    await mesh.kit.put({ _id: 'mesh:note:from-kit', type: 'mesh-note' });
    await waitFor('modane → kit', () => mesh.kit.get('mesh:note:from-modane'), 20_000);
    await waitFor('kit → modane', () => mesh.modane.get('mesh:note:from-kit'), 20_000);
    const assignment = await waitFor('the assignment on kit', () => mesh.kit.get<{ steps: Record<string, string>; type: string }>('mesh:assignment'), 20_000);
    assert.deepEqual(assignment.steps, { proc0: 'modane', proc1: 'kit' });

    // Everything written by the first run has reached both sides.
    const settled = await waitFor(
      'both databases equal',
      async () => {
        const [a, b] = await Promise.all([revisions(mesh.modane), revisions(mesh.kit)]);
        return JSON.stringify(a) === JSON.stringify(b) && a['mesh:audit:kit'] && a['mesh:audit:modane'] ? a : undefined;
      },
      20_000,
    );
    const jobsBefore = await revisions(mesh.replicator.modane);
    const markersBefore = await mesh.modane.get<{ n: number }>('mesh-marker:modane');
    await coordinatorOnce(mesh);
    assert.equal((await mesh.modane.get<{ n: number }>('mesh-marker:modane'))?.n, (markersBefore?.n ?? 0) + 1, 'each round writes one marker on each server');
    assert.deepEqual(await revisions(mesh.modane), settled, "the second run wrote into modane's database");
    assert.deepEqual(await revisions(mesh.kit), settled, "the second run wrote into kit's database");
    assert.deepEqual(await revisions(mesh.replicator.modane), jobsBefore, 'the second run rewrote a replication job');

    for (const doc of [settled, await revisions(mesh.replicator.kit)]) for (const secret of SECRETS) assert.ok(!JSON.stringify(doc).includes(secret));
    const everything = JSON.stringify((await mesh.kit.allDocs({ include_docs: true })).rows);
    for (const secret of SECRETS) assert.ok(!everything.includes(secret), 'a credential reached the replicated database');
  });

  it('a forced double claim: both servers keep the same winner, the other run in duplicates[], counted in mesh status', async () => {
    const mesh = await twoSites();
    const db = mesh.config.database;
    await coordinatorOnce(mesh);
    const id = 'run_lg23b002_000';
    const agents = { modane: asAccount(modaneServer.url, 'modane-agent', db), kit: asAccount(kitServer.url, 'kit-agent', db) };
    await asAccount(kitServer.url, 'modane-agent', db).put({
      _id: id,
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: 0,
      file: '/data/lg23b002_000',
      size_in_bytes: 1,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: historyTo('closed', [], undefined, 'modane/ingest', 'modane-agent'),
    });
    const base = await waitFor('the closed document on modane', () => mesh.modane.get<DaqDocument>(id), 20_000);

    // The partition: no replication while each site believes it owns proc0.
    await deleteJobs(mesh);
    const lease = new Date(Date.now() + 600_000).toISOString();
    const runOn = async (target: Database, site: string, agent: string, file: string): Promise<DaqDocument> => {
      const claimed = transition(
        base,
        { type: 'claim', step: 'proc0', mode: 'run', site, agent, host: 'test', lease_until: lease, user: target.user },
        new Date(),
        mesh.config,
      );
      assert.ok(claimed.ok);
      const claimedRev = await target.put(claimed.doc);
      const done = transition(
        { ...claimed.doc, _rev: claimedRev },
        { type: 'succeed', step: 'proc0', agent, result: { exit_code: 0, duration_s: 1, file, checksum: { sha256: site.repeat(4) } }, user: target.user },
        new Date(),
        mesh.config,
      );
      assert.ok(done.ok);
      return { ...done.doc, _rev: await target.put(done.doc) };
    };
    const onModane = await runOn(agents.modane, 'modane', 'modane-agent', '/sps/raw/a');
    const onKit = await runOn(agents.kit, 'kit', 'kit-agent', '/sps/raw/b');
    const [expected, other] = rankLeaves(
      [onModane, onKit],
      mesh.config.steps.map((s) => s.name),
    );

    // The coordinator restores replication, which carries both branches; its audit resolves them.
    const finals = await waitFor(
      'one winner without conflicts on both servers',
      async () => {
        await coordinatorOnce(mesh);
        const [a, b] = await Promise.all([mesh.modane.get<DaqDocument>(id, { conflicts: true }), mesh.kit.get<DaqDocument>(id, { conflicts: true })]);
        const merged = (d?: DaqDocument) => d && !d._conflicts && Array.isArray(d.duplicates) && d.duplicates.length > 0;
        return merged(a) && merged(b) && a?._rev === b?._rev ? [a as DaqDocument, b as DaqDocument] : undefined;
      },
      90_000,
      200,
    );

    const [winner] = finals;
    assert.deepEqual(finals[0], finals[1]);
    assert.equal(
      (stepRecord(winner, 'proc0') as StepRecord).agent,
      (stepRecord(expected, 'proc0') as StepRecord).agent,
      'the winner is the leaf the ordering picks',
    );
    assert.equal(winner.status, 'good');
    const duplicates = winner.duplicates as Array<Record<string, unknown>>;
    assert.equal(duplicates.length, 1);
    const loser = stepRecord(other, 'proc0') as StepRecord;
    assert.deepEqual(duplicates[0], {
      site: loser.site,
      agent: loser.agent,
      step: 'proc0',
      started: loser.started,
      result: { ok: true, exit_code: 0, file: loser.file, checksum: loser.checksum },
      rev: other._rev,
    });
    for (const server of [mesh.modane, mesh.kit]) {
      const leaves = (await server.get<Array<{ ok?: DaqDocument }>>(id, { open_revs: 'all' })) ?? [];
      assert.deepEqual(
        leaves.filter((l) => l.ok && !l.ok._deleted).map((l) => l.ok?._rev),
        [winner._rev],
        'one live leaf',
      );
    }

    const status = await runMesh(['--config', mesh.configFile, 'status', '--json'], ENV);
    assert.equal(status.status, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as MeshStatus;
    // One document claimed twice is one double claim, however many servers hold it.
    assert.deepEqual(parsed.double_claims, { detected: 1, resolved: 1 });
    assert.deepEqual(parsed.replication.map((r) => `${r.from}>${r.to}@${r.on}`).sort(), ['kit>modane@modane', 'modane>kit@modane']);
    for (const r of parsed.replication) assert.equal(r.state, 'running');
    assert.equal(
      parsed.databases.every((d) => d.conflicts === 0),
      true,
    );
    // The lag comes from the markers each coordinator round writes, once they have crossed.
    await waitFor(
      'lag from the markers, nothing behind',
      async () => {
        const again = JSON.parse((await runMesh(['--config', mesh.configFile, 'status', '--json'], ENV)).stdout) as MeshStatus;
        return again.replication.every((r) => r.lag_from === 'marker' && r.behind_s !== null && r.behind_s < 5);
      },
      20_000,
      250,
    );
    assert.equal((await jobIds(mesh.replicator.kit, db)).length, 0);

    // With kit down the count stays: modane holds the same merged document.
    await kitServer.stop();
    const alone = await runMesh(['--config', mesh.configFile, 'status', '--json'], ENV);
    // 3: a server could not be read; what modane holds is still counted.
    assert.equal(alone.status, 3, alone.stderr);
    assert.deepEqual((JSON.parse(alone.stdout) as MeshStatus).double_claims, { detected: 1, resolved: 1 }, 'a server down does not take the count with it');
  });
});
