/**
 * A site's `mesh agent --once` runs on one host are one agent for `mesh status`, the page and
 * the alerts: every run rewrites the same heartbeat document (`<site>-<host>-once`) with itself as
 * the last run, while it claims under its own name. Real `mesh` processes against a real embedded
 * server for the runs; the overlap of two runs (who owns the document) with the real Heartbeat in
 * process against the same server.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { AgentContext } from '../../agents/context.js';
import { Heartbeat } from '../../agents/heartbeat.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SiteConfig } from '../../config/types.js';
import { evaluateAlerts, silentFor } from '../../coordinator/alerts.js';
import { meshStatus } from '../../coordinator/status.js';
import { formatStatus } from '../../cli/commands/status.js';
import { type DaqDocument, stepRecord } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { historyTo } from '../../core/provenance.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { type AgentHeartbeat, heartbeatId, onceIdentity, readHeartbeats, writeHeartbeat } from '../../store/heartbeats.js';
import { testFolder } from '../support/folders.js';
import { NOOP, runMesh, serverForSuite, uniqueDatabase } from '../support/mesh.js';
import type { ServerProcess } from '../support/server-process.js';

const HOST = hostname();

describe('--once runs: one heartbeat per site and host, showing the last run (real mesh processes, real server)', function () {
  this.timeout(90_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  /** alpha runs proc0 itself (a plain --once pass), lyon submits proc1 as batch jobs (it has nothing to submit here). */
  async function setUp(): Promise<{ config: MeshConfig; configFile: string; db: Database }> {
    const dir = testFolder('mesh-once-beat-');
    const raw = {
      database: uniqueDatabase('once'),
      doc_type: 'daqdocument',
      sites: {
        alpha: { server: server.url, reachable: true, long_running: false, log_dir: join(dir, 'logs', 'alpha') },
        lyon: {
          server: server.url,
          reachable: true,
          long_running: false,
          log_dir: join(dir, 'logs', 'lyon'),
          batch: { system: 'slurm', options: [], docs_per_job: 10, mesh: ['/bin/false'] },
        },
      },
      ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: [
        { name: 'proc0', site: 'alpha', run: [process.execPath, NOOP, '--touch', '{out}'], out: join(dir, 'out', '{run_name}_{file_number}'), lease_s: 30 },
        { name: 'proc1', site: 'lyon', run: ['/bin/true'], out: join(dir, 'out', '{run_name}_{file_number}.1'), lease_s: 30 },
      ],
      agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    const db = new Database({ url: server.url, database: config.database });
    await db.ensure();
    await pushDesigns(db, config);
    return { config, configFile, db };
  }

  /** One `mesh agent --site S --once` to its end; the agent name it claimed under, from its first log line. */
  async function once(configFile: string, site: string): Promise<string> {
    const run = await runMesh(['--config', configFile, 'agent', '--site', site, '--once'], { MESH_LOG_LEVEL: 'info' }, 30_000);
    assert.equal(run.status, 0, `agent --site ${site} --once: ${run.stderr}`);
    const agent = /"agent":"([^"]+)"/.exec(run.stderr)?.[1];
    assert.ok(agent, `no agent name in the log of the run: ${run.stderr.slice(0, 300)}`);
    return agent;
  }

  it('three --once passes of a batch site, two of a plain one: one heartbeat each, showing the last run; never silent, one agent in mesh status', async () => {
    const { config, configFile, db } = await setUp();
    const lyonRuns: string[] = [];
    for (let i = 0; i < 3; i++) lyonRuns.push(await once(configFile, 'lyon'));
    assert.equal(new Set(lyonRuns).size, 3, 'each run claims under a name of its own');
    for (const name of lyonRuns) assert.match(name, new RegExp(`^lyon-${HOST}-\\d+$`));

    await db.bulk([
      {
        _id: 'run_lg23b002_0000',
        type: 'daqdocument',
        run_name: 'lg23b002',
        file_number: 0,
        file: join(testFolder('mesh-once-daq-'), 'lg23b002_000'),
        size_in_bytes: 0,
        date_closed: new Date().toISOString(),
        status: 'closed',
        history: historyTo('closed', []),
      },
    ]);
    const alphaFirst = await once(configFile, 'alpha');
    const done = (await db.get<DaqDocument>('run_lg23b002_0000')) as DaqDocument;
    assert.equal(stepRecord(done, 'proc0')?.ok, true, 'the plain pass ran the ready step');
    assert.equal(stepRecord(done, 'proc0')?.agent, alphaFirst, 'the step is recorded under the run’s own name');
    const afterFirst = (await db.get<AgentHeartbeat>(heartbeatId('alpha', onceIdentity('alpha', HOST)))) as AgentHeartbeat;
    assert.equal(afterFirst.counters?.steps_ok, 1);
    const alphaSecond = await once(configFile, 'alpha');

    const beats = await readHeartbeats(db);
    assert.deepEqual(
      beats.map((b) => b._id).sort(),
      [heartbeatId('alpha', `alpha-${HOST}-once`), heartbeatId('lyon', `lyon-${HOST}-once`)],
      'one heartbeat document per site and host, whatever the number of runs',
    );
    const lyon = beats.find((b) => b.site === 'lyon') as AgentHeartbeat;
    assert.equal(lyon.agent, `lyon-${HOST}-once`);
    assert.equal(lyon.state, 'stopped');
    assert.equal(lyon.last_run?.agent, lyonRuns[2], 'the document shows the last run');
    assert.equal(lyon.last_run?.outcome, 'ok');
    assert.ok(lyon.last_run?.finished && lyon.last_run.finished >= lyon.last_run.started, JSON.stringify(lyon.last_run));
    assert.ok(Number.parseInt(lyon._rev ?? '', 10) >= 6, `each run wrote at its start and at its end (rev ${lyon._rev})`);
    const alpha = beats.find((b) => b.site === 'alpha') as AgentHeartbeat;
    assert.equal(alpha.last_run?.agent, alphaSecond);
    assert.equal(alpha.counters?.steps_ok, 0, "the counters are the last run's: nothing was left to run");

    // `mesh status` and the page (the same AgentStatus list) show one agent per site, with its last run.
    const open = (site: SiteConfig, database?: string) => new Database({ url: site.server, database: database ?? config.database });
    const status = await meshStatus(config, open);
    assert.deepEqual(status.agents.map((a) => `${a.site}/${a.agent}`).sort(), [`alpha/alpha-${HOST}-once`, `lyon/lyon-${HOST}-once`]);
    const text = formatStatus(status);
    assert.match(text, new RegExp(`lyon/lyon-${HOST}-once on ${HOST}: stopped, .*; last run ${lyonRuns[2]} \\(started [^)]+\\): ok after \\d+\\.\\d s`));

    // A stopped --once identity is not silent, however long until the next run.
    const muchLater = new Date(Date.now() + 100 * config.alerts.agent_silent_s * 1000);
    for (const agent of status.agents) assert.equal(silentFor(agent, config, muchLater), undefined);
    assert.deepEqual(
      evaluateAlerts(status, [], config, muchLater).filter((a) => a.kind === 'agent_silent'),
      [],
    );
  });

  it('overlapping runs: the run that started last owns the document, the older one gives way without failing', async () => {
    const { config, db } = await setUp();
    const as = onceIdentity('lyon', HOST);
    const id = heartbeatId('lyon', as);
    const t0 = Date.now();
    const ctx = (name: string, offsetMs: number): AgentContext => ({
      config,
      site: config.sites.lyon,
      name,
      host: HOST,
      heartbeatAs: as,
      db,
      logger: silentLogger(),
      steps: config.steps.filter((s) => s.site === 'lyon'),
      now: () => new Date(Date.now() + offsetMs),
    });
    const older = new Heartbeat(ctx('lyon-old', 0), () => []);
    const newer = new Heartbeat(ctx('lyon-new', Date.now() - t0 + 1000), () => []);
    // Both first beats at once: compare-and-set on one document, neither throws.
    await Promise.all([older.beat('running'), newer.beat('running')]);
    let doc = (await db.get<AgentHeartbeat>(id)) as AgentHeartbeat;
    assert.equal(doc.last_run?.agent, 'lyon-new', 'the newer run holds the document, whichever wrote first');
    assert.equal(doc.state, 'running');

    // The older run ends first: its last heartbeat is not written over the newer run's.
    await older.stop('stopped', 'ok');
    doc = (await db.get<AgentHeartbeat>(id)) as AgentHeartbeat;
    assert.equal(doc.last_run?.agent, 'lyon-new');
    assert.equal(doc.state, 'running');

    await newer.stop('stopped', 'failed');
    doc = (await db.get<AgentHeartbeat>(id)) as AgentHeartbeat;
    assert.deepEqual([doc.state, doc.last_run?.agent, doc.last_run?.outcome], ['stopped', 'lyon-new', 'failed']);
    assert.ok(doc.last_run?.finished);

    // A write on a revision someone else replaced is decided again on the latest, not thrown.
    const stale = await writeHeartbeat(db, { ...doc, last_seen: new Date().toISOString() }, '1-0123456789abcdef0123456789abcdef');
    assert.equal(stale.written, true);
    assert.equal(newer.writes, 2);
  });
});
