/**
 * Replication freshness from the markers, against two real embedded servers (child processes)
 * with accounts: coordinator rounds run in process; the replication jobs log in as the
 * coordinator's account. Markers arrive → 0 s behind; a job that runs but carries nothing is
 * restarted once its link is past the stall threshold; with the peer down nothing is restarted
 * and the job's state and error reason are what the server says; a marker forged by any other
 * account is refused by the server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { formatStatus } from '../../cli/commands/status.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SiteConfig } from '../../config/types.js';
import { metricsText } from '../../coordinator/metrics.js';
import { type ReplicationReport, ReplicationMonitor, plannedReplications, replicationDocument, replicationId } from '../../coordinator/replication.js';
import { type CoordinatorContext, type RoundSummary, coordinatorRound, summaryLine } from '../../coordinator/round.js';
import { meshStatus } from '../../coordinator/status.js';
import { silentLogger } from '../../core/log.js';
import { Database } from '../../store/database.js';
import { type Marker, markerId, writeMarker } from '../../store/markers.js';
import { readJob, removeJob } from '../../store/replication.js';
import { type GarbageServer, startGarbageServer } from '../support/garbage-server.js';
import { testFolder } from '../support/folders.js';
import { uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, runMesh, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const secret = () => randomBytes(12).toString('hex');
const ADMIN = { modane: secret(), kit: secret() };
const ACCOUNTS = {
  coord: { password: secret(), roles: ['mesh-coordinator'] },
  'kit-agent': { password: secret(), roles: ['mesh-agent:kit'] },
  op: { password: secret(), roles: ['mesh-operator'] },
  reader: { password: secret(), roles: ['mesh-reader'] },
};
const SERVER_ENV = { MESH_MODANE_USER: 'admin', MESH_MODANE_PASSWORD: ADMIN.modane, MESH_KIT_USER: 'admin', MESH_KIT_PASSWORD: ADMIN.kit };
/** The replication jobs' account, read from the environment by replicationDocument (as `mesh coordinator` does). */
const REPLICATION_ENV = {
  MESH_MODANE_REPLICATION_USER: 'coord',
  MESH_MODANE_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
  MESH_KIT_REPLICATION_USER: 'coord',
  MESH_KIT_REPLICATION_PASSWORD: ACCOUNTS.coord.password,
};
const INTERVAL_MS = 1_000;
const STALL_MS = 3_000;

interface Mesh {
  config: MeshConfig;
  configFile: string;
  ctx: CoordinatorContext;
  monitor: ReplicationMonitor;
  site(name: 'modane' | 'kit'): SiteConfig;
  db(name: 'modane' | 'kit'): Database;
}

function link(summary: { replications: ReplicationReport[] }, from: string, to: string): ReplicationReport {
  const found = summary.replications.find((r) => r.from === from && r.to === to);
  assert.ok(found, `no report for ${from} → ${to}`);
  return found;
}

/** A loopback port nothing listens on: a server that is down. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('replication freshness: markers between two real servers', function () {
  this.timeout(180_000);
  let modaneServer: ServerProcess;
  let kitServer: ServerProcess;
  const savedEnv: Record<string, string | undefined> = {};

  before(async () => {
    for (const [key, value] of Object.entries(REPLICATION_ENV)) {
      savedEnv[key] = process.env[key];
      process.env[key] = value;
    }
    [modaneServer, kitServer] = await Promise.all([
      startServerProcess({ site: 'modane', env: SERVER_ENV }),
      startServerProcess({ site: 'kit', env: SERVER_ENV }),
    ]);
    for (const [server, site] of [
      [modaneServer, 'modane'],
      [kitServer, 'kit'],
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
    await Promise.all([modaneServer?.stop(), kitServer?.stop()]);
    await stopAllServerProcesses();
  });

  /** A fresh database: modane (reachable by nobody: it holds both jobs) and kit; `urls` overrides a server's address. */
  async function twoSites(urls: Partial<Record<'modane' | 'kit', string>> = {}): Promise<Mesh> {
    const dir = testFolder('mesh-fresh-');
    const raw = {
      database: uniqueDatabase('fresh'),
      doc_type: 'daqdocument',
      sites: {
        modane: { server: urls.modane ?? modaneServer.url, reachable: false, long_running: true, may_run: ['proc0'], log_dir: join(dir, 'logs', 'modane') },
        kit: { server: urls.kit ?? kitServer.url, reachable: true, long_running: true, may_run: ['proc1'], log_dir: join(dir, 'logs', 'kit') },
      },
      ingest: { site: 'modane', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: [
        { name: 'proc0', site: 'modane', run: ['true'], out: join(dir, 'out0', '{run_name}_{file_number}'), lease_s: 60 },
        { name: 'proc1', site: 'kit', run: ['true'], out: join(dir, 'out1', '{run_name}_{file_number}'), lease_s: 60 },
      ],
      coordinator: { site: 'modane', interval_s: INTERVAL_MS / 1000 },
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    const open = (site: SiteConfig, database?: string) =>
      new Database({
        url: site.server,
        database: database ?? config.database,
        credentials: { user: 'admin', password: ADMIN[site.name as 'modane' | 'kit'] },
        timeoutMs: 10_000,
      });
    const site = (name: 'modane' | 'kit') => config.sites[name];
    return {
      config,
      configFile,
      ctx: { config, open, logger: silentLogger(), by: 'coordinator/modane' },
      monitor: new ReplicationMonitor({ intervalMs: INTERVAL_MS, stallAfterMs: STALL_MS }),
      site,
      db: (name) => open(site(name)),
    };
  }

  /** Rounds (about one per interval, as `mesh coordinator` runs them) until `until` holds for a round's summary; bounded. */
  async function roundsUntil(
    mesh: Mesh,
    what: string,
    until: (summary: RoundSummary) => boolean,
    timeoutMs = 30_000,
    seen: RoundSummary[] = [],
  ): Promise<RoundSummary> {
    let round = seen.length;
    return waitFor(
      what,
      async () => {
        const summary = await coordinatorRound(mesh.ctx, mesh.monitor, ++round);
        seen.push(summary);
        return until(summary) ? summary : undefined;
      },
      timeoutMs,
      INTERVAL_MS,
    );
  }

  /** Two rounds and the markers crossed in between: both links 0 s behind. */
  async function healthy(mesh: Mesh): Promise<RoundSummary> {
    const first = await coordinatorRound(mesh.ctx, mesh.monitor, 1);
    assert.deepEqual(first.markers.map((m) => `${m.site}:${m.result}:${m.n}`).sort(), ['kit:written:1', 'modane:written:1']);
    assert.equal(link(first, 'modane', 'kit').behind_s, null, 'nothing to measure before the first markers');
    await waitFor('the markers crossed', async () => (await mesh.db('kit').get(markerId('modane'))) && (await mesh.db('modane').get(markerId('kit'))), 20_000);
    return roundsUntil(mesh, 'both links 0 s behind', (s) => s.replications.every((r) => r.behind_s === 0));
  }

  /**
   * Replaces the job with one that runs but carries nothing. The embedded replicator's completion
   * handler of the deleted job may mark the new document `completed` a moment later: then again,
   * until it has stayed `triggered` for three reads in a row.
   */
  async function installStuckJob(mesh: Mesh, replicator: Database, job: ReturnType<typeof plannedReplications>[number]): Promise<void> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      await removeJob(replicator, job.id);
      await replicator.put({ ...replicationDocument(mesh.config, job), doc_ids: ['mesh-nothing'] });
      let steady = 0;
      const state = await waitFor(
        'the stuck job settled',
        async () => {
          const doc = await readJob(replicator, job.id);
          const now = doc?._replication_state;
          if (now !== 'triggered') return now === undefined ? undefined : now;
          return ++steady >= 3 ? now : undefined;
        },
        10_000,
        200,
      );
      if (state === 'triggered') return;
    }
    assert.fail('the embedded replicator kept marking the stuck job completed');
  }

  it('markers cross: each link 0 s behind, shown by mesh status (text and JSON) and /metrics', async () => {
    const mesh = await twoSites();
    const summary = await healthy(mesh);
    for (const r of summary.replications) {
      assert.equal(r.lag_from, 'marker');
      assert.equal(r.state, 'running');
      assert.equal(r.stalled, false);
      assert.ok(r.marker_age_s !== null && r.marker_age_s < 10, `marker age ${r.marker_age_s}`);
    }
    assert.match(summaryLine(summary), /modane→kit running, kit is 0 s behind modane/);

    const status = await meshStatus(mesh.config, mesh.ctx.open);
    for (const r of status.replication) assert.ok(r.behind_s !== null && r.behind_s < 2, `${r.from} → ${r.to}: ${r.behind_s}`);
    assert.match(
      formatStatus(status),
      /modane → kit \(job on modane\): running; kit is [\d.]+ s behind modane \(modane's newest marker there written [\d.]+ s ago\)/,
    );

    const cli = await runMesh(['--config', mesh.configFile, 'status', '--json'], SERVER_ENV, 60_000);
    assert.equal(cli.status, 0, cli.stderr);
    const json = JSON.parse(cli.stdout) as { replication: Array<Record<string, unknown>> };
    for (const r of json.replication) {
      for (const key of ['from', 'to', 'on', 'state', 'pending', 'lag_from', 'behind_s', 'marker_age_s', 'stalled'])
        assert.ok(key in r, `mesh status --json replication lacks ${key}`);
      assert.equal(typeof r.behind_s, 'number');
    }
    const metrics = await metricsText(mesh.config, mesh.ctx.open);
    assert.match(metrics.body, /couchmesh_replication_behind_seconds\{from="modane",to="kit",on="modane"\} [\d.]+/);
    assert.match(metrics.body, /couchmesh_replication_stalled\{from="kit",to="modane",on="modane"\} 0/);
    assert.ok(!JSON.stringify(json).includes(ACCOUNTS.coord.password), 'a credential reached mesh status');
  });

  it('a job that runs but carries nothing falls behind and is restarted once past the threshold; the other link is left alone', async () => {
    const mesh = await twoSites();
    await healthy(mesh);
    // The modane → kit job replaced by one that is as wanted to the coordinator (same source,
    // target, continuous) but copies only a document that does not exist: it runs, nothing arrives.
    const job = plannedReplications(mesh.config).find((j) => j.id === replicationId(mesh.config.database, 'modane', 'kit'));
    assert.ok(job);
    const replicator = mesh.ctx.open(mesh.site('modane'), '_replicator');
    await installStuckJob(mesh, replicator, job);

    const seen: RoundSummary[] = [];
    const restarted = await roundsUntil(mesh, 'the stuck job restarted', (s) => link(s, 'modane', 'kit').action === 'restarted', 30_000, seen);
    const stuck = link(restarted, 'modane', 'kit');
    assert.equal(stuck.restarted_for, 'stalled');
    assert.equal(stuck.state, 'running', 'the server called the stuck job running throughout');
    assert.ok(stuck.behind_s !== null && stuck.behind_s * 1000 >= STALL_MS, `restarted at ${stuck.behind_s} s behind`);
    const behind = seen.map((s) => link(s, 'modane', 'kit').behind_s ?? -1);
    assert.ok(
      behind.every((b, i) => i === 0 || b >= behind[i - 1]),
      `behind_s grew while nothing arrived: ${behind.join(', ')}`,
    );
    assert.ok(
      seen.every((s) => link(s, 'kit', 'modane').action === 'none' && (link(s, 'kit', 'modane').behind_s ?? 99) < 1),
      'kit → modane was healthy and left alone',
    );
    assert.equal((await readJob(replicator, job.id))?.doc_ids, undefined, 'the job was recreated as wanted');

    // Once recreated, the markers arrive again.
    const recovered = await roundsUntil(mesh, 'kit caught up with modane', (s) => link(s, 'modane', 'kit').behind_s === 0);
    assert.equal(link(recovered, 'modane', 'kit').action, 'none');
  });

  it('with the scheduler answering, a crashing job keeps its state and reason; restarted only while both ends answer', async () => {
    // modane's server behind a proxy that answers /_scheduler/docs as CouchDB 3 does for a job whose login fails.
    const reason = 'replication_auth_error: Authentication failed for the source';
    const scheduler: GarbageServer = await startGarbageServer(
      [
        { match: '^GET /_scheduler/docs\\?', answer: { body: JSON.stringify({ total_rows: 0, offset: 0, docs: [] }) } },
        { match: '^GET /_scheduler/docs/_replicator/', answer: { body: JSON.stringify({ state: 'crashing', info: { error: reason }, error_count: 4 }) } },
      ],
      modaneServer.url,
    );
    try {
      const both = await twoSites({ modane: scheduler.url });
      const first = await coordinatorRound(both.ctx, both.monitor, 1);
      assert.ok(
        first.replications.every((r) => r.action === 'created'),
        JSON.stringify(first.replications),
      );
      const second = await coordinatorRound(both.ctx, both.monitor, 2);
      for (const r of second.replications) {
        assert.deepEqual(
          [r.state, r.reason, r.action, r.restarted_for],
          ['crashing', reason, 'restarted', 'crashing'],
          `${r.from} → ${r.to} with both ends up`,
        );
      }
      // The same jobs with kit down: a restart cannot help; the state and the reason stay as the server says.
      const down = await twoSites({ modane: scheduler.url, kit: `http://127.0.0.1:${await closedPort()}` });
      await coordinatorRound(down.ctx, down.monitor, 1);
      const peerDown = await coordinatorRound(down.ctx, down.monitor, 2);
      assert.deepEqual(
        peerDown.servers.map((s) => `${s.site}:${s.reachable}`),
        ['modane:true', 'kit:false'],
      );
      for (const r of peerDown.replications) {
        assert.deepEqual([r.state, r.reason, r.action], ['crashing', reason, 'none'], `${r.from} → ${r.to} with kit down`);
      }
      assert.match(summaryLine(peerDown), /kit UNREACHABLE/);
      assert.match(summaryLine(peerDown), new RegExp(`modane→kit crashing \\(${reason}\\), kit behind modane: unknown \\(target not read\\)`));
      assert.ok(scheduler.requests.filter((r) => r.startsWith('GET /_scheduler/docs?')).length <= 2, 'the capability is probed once per server and monitor');
      // The jobs of these two meshes point at the proxy and at a closed port: removed, not left retrying.
      const replicator = new Database({ url: modaneServer.url, database: '_replicator', credentials: { user: 'admin', password: ADMIN.modane } });
      for (const mesh of [both, down]) for (const job of plannedReplications(mesh.config)) await removeJob(replicator, job.id);
    } finally {
      await scheduler.stop();
    }
  });

  it("a forged marker is refused by the server for every account but the coordinator's", async () => {
    const mesh = await twoSites();
    await coordinatorRound(mesh.ctx, mesh.monitor, 1);
    const as = (name: keyof typeof ACCOUNTS) =>
      new Database({ url: modaneServer.url, database: mesh.config.database, credentials: { user: name, password: ACCOUNTS[name].password } });
    const stored = await mesh.db('modane').get<Marker>(markerId('modane'));
    assert.ok(stored);
    const forged = { ...stored, n: stored.n + 1, written: new Date(Date.now() + 3_600_000).toISOString() };
    for (const name of ['kit-agent', 'op', 'reader'] as const) {
      const db = as(name);
      await assert.rejects(
        db.put({ ...forged }),
        (e: { code?: string; reason?: string }) => e.code === 'FORBIDDEN' && /may not write "mesh-marker" documents: the coordinator does/.test(e.reason ?? ''),
        `${name} rewrote the marker`,
      );
      await assert.rejects(
        db.put({ ...forged, _id: markerId('lyon'), site: 'lyon', _rev: undefined }),
        (e: { code?: string }) => e.code === 'FORBIDDEN',
        `${name} created a marker`,
      );
      // As replication would carry it: a new revision with new_edits=false.
      const branch = await db
        .request<Array<{ error?: string }>>('forged branch', {
          method: 'POST',
          path: '_bulk_docs',
          body: { new_edits: false, docs: [{ ...forged, _rev: `${stored.n + 5}-${'f'.repeat(32)}` }] },
        })
        .catch((e: { code?: string }) => [{ error: e.code }]);
      assert.ok(branch.length === 1 && branch[0].error !== undefined, `${name}'s replicated forgery was stored: ${JSON.stringify(branch)}`);
    }
    assert.deepEqual(await mesh.db('modane').get(markerId('modane')), stored, 'the marker is as the coordinator wrote it');
    assert.equal(await mesh.db('modane').get(markerId('lyon')), undefined);
    // The coordinator's own account writes it (and carries it, as its replication jobs do).
    const written = await writeMarker(as('coord'), 'modane', { by: 'coordinator/modane', now: new Date(), intervalS: 1 });
    assert.equal(written.result, 'written');
    assert.equal(written.result === 'written' && written.marker.n, stored.n + 1);
  });

  it('peer down: nothing restarted, the link it can still read grows past the threshold, and all is fresh again once it is back', async () => {
    const mesh = await twoSites();
    await healthy(mesh);
    await kitServer.kill();
    const seen: RoundSummary[] = [];
    const stalled = await roundsUntil(mesh, 'kit → modane past the threshold', (s) => link(s, 'kit', 'modane').stalled, 30_000, seen);
    for (const s of seen) {
      assert.equal(s.servers.find((x) => x.site === 'kit')?.reachable, false);
      for (const r of s.replications) assert.equal(r.action, 'none', `${r.from} → ${r.to} restarted with kit down`);
      assert.equal(link(s, 'modane', 'kit').behind_s, null, 'kit not read: unknown, not 0');
      assert.deepEqual(
        s.markers.map((m) => m.site),
        ['modane'],
        'markers are written only where the coordinator reaches',
      );
    }
    const toModane = link(stalled, 'kit', 'modane');
    // The embedded replicator keeps retrying and calls the job running: the markers tell the truth.
    assert.equal(typeof toModane.state, 'string');
    assert.ok(toModane.behind_s !== null && toModane.behind_s * 1000 >= STALL_MS);
    // mesh status measures the same way (its stall flag uses the configured threshold, at least a minute).
    const status = await meshStatus(mesh.config, mesh.ctx.open);
    const fromKit = status.replication.find((r) => r.from === 'kit');
    assert.ok(fromKit?.behind_s !== null && (fromKit?.behind_s ?? 0) * 1000 >= STALL_MS, JSON.stringify(fromKit));
    assert.equal(status.replication.find((r) => r.from === 'modane')?.behind_s, null);

    await kitServer.restart();
    await roundsUntil(
      mesh,
      'both links fresh after kit came back',
      (s) => s.servers.every((x) => x.reachable) && s.replications.every((r) => r.behind_s === 0),
      90_000,
    );
  });
});
