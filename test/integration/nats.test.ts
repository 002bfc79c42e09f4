import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { Database } from '../../store/database.js';
import type { DaqDocument, StepRecord } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { type Hint, MeshChannel } from '../../core/nats.js';
import { type TestMesh, makeMesh, seedDocuments, spawnMeshProcess, startAgent, stopAllMeshProcesses, stopProcess, waitFor } from '../support/mesh.js';
import { type NatsServer, startNatsServer, stopAllNatsServers } from '../support/nats.js';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';
import { historyTo } from '../../core/provenance.js';
import { registryStep } from '../../core/registry-step.js';

/** Rewrites a test mesh's config file (the agents read it): `edit` changes the raw JSON. */
async function editConfig(mesh: TestMesh, edit: (raw: Record<string, unknown> & { steps: Array<Record<string, unknown>> }) => void): Promise<void> {
  const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
  edit(raw);
  await writeFile(mesh.configFile, JSON.stringify(raw, null, 2));
  mesh.config = parseMeshConfig(raw, mesh.configFile);
}

async function logText(mesh: TestMesh, agent: string): Promise<string> {
  return readFile(join(mesh.dir, `${agent}.log`), 'utf8').catch(() => '');
}

/** Occurrences of a log message (pino JSON lines) in an agent's log. */
async function logCount(mesh: TestMesh, agent: string, msg: string): Promise<number> {
  return (await logText(mesh, agent)).split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
}

/** The counters the agent logged when it stopped. */
async function stoppedCounters(mesh: TestMesh, agent: string): Promise<Record<string, number>> {
  const line = (await logText(mesh, agent)).split('\n').find((l) => l.includes('"msg":"agent stopped"'));
  return line ? JSON.parse(line) : {};
}

async function runLines(mesh: TestMesh): Promise<string[]> {
  return (await readFile(mesh.runLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

async function completeDocs(db: Database, last: string): Promise<number> {
  const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
  return rows.filter((r) => r.doc?.status === 'good' && (r.doc[last] as StepRecord | undefined)?.ok === true).length;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

describe('the NATS channel against a real nats-server', function () {
  this.timeout(300_000);
  let server: ServerProcess;
  let nats: NatsServer;
  const channels: MeshChannel[] = [];

  async function testChannel(url: string, name: string): Promise<MeshChannel> {
    const channel = await MeshChannel.connect(url, { logger: silentLogger(), name, claimTtlMs: 60_000 });
    channels.push(channel);
    return channel;
  }

  before(async () => {
    [server, nats] = await Promise.all([startServerProcess(), startNatsServer()]);
  });
  afterEach(async () => {
    await Promise.all(channels.splice(0).map((c) => c.close()));
    assert.equal(await stopAllMeshProcesses(), 0, 'a test left mesh processes running');
  });
  after(async () => {
    await server.stop();
    await nats.stop();
    await stopAllServerProcesses();
    await stopAllNatsServers();
  });

  it('a reprocessed step is a new generation in the registry: the done key of its first run does not hold the re-run back', async () => {
    const channel = await testChannel(nats.url, 'generations');
    const db = 'mesh_generations';
    const doc: { _id: string; superseded?: Array<{ step: string }> } = { _id: 'run_lg23b002_000' };
    const first = registryStep(doc, 'proc1');
    assert.equal(first, 'proc1', 'a document never reprocessed keeps the key it always had');
    assert.equal(await channel.tryReserve(db, doc._id, first, 'lyon/a1'), 'reserved');
    await channel.complete(db, doc._id, first, 'lyon/a1');
    // Until the TTL, a site that has not seen the success yet cannot run proc1 again.
    assert.equal(await channel.tryReserve(db, doc._id, first, 'kit/b1'), 'taken');
    // An operator's reprocess moved proc1 (and proc2) into superseded: a new generation of proc1, not of proc0.
    doc.superseded = [{ step: 'proc1' }, { step: 'proc2' }];
    const second = registryStep(doc, 'proc1');
    assert.notEqual(second, first);
    assert.equal(registryStep(doc, 'proc0'), 'proc0');
    assert.equal(await channel.tryReserve(db, doc._id, second, 'lyon/a1'), 'reserved', 'the re-run reserves at once');
    // And it is still exclusive across sites.
    assert.equal(await channel.tryReserve(db, doc._id, second, 'kit/b1'), 'taken');
    await channel.release(db, doc._id, second, 'lyon/a1');
  });

  it('MeshChannel: never throws while NATS is down; create-if-absent registry, released only by its holder', async () => {
    // A port nobody listens on: connect returns, everything degrades.
    const down = await testChannel('nats://127.0.0.1:1', 'down');
    assert.equal(down.available, false);
    assert.equal(await down.tryReserve('db', 'doc', 'proc0', 'x/a'), 'unavailable');
    down.publish('ready', { db: 'db', doc: 'doc', step: 'proc0', site: 'x' });
    await down.close();
    await down.close();

    const a = await testChannel(nats.url, 'a');
    const b = await testChannel(nats.url, 'b');
    assert.equal(a.available, true);
    const db = 'unit_db$(odd)/name';
    const id = 'run with spaces/.. and ünïcode';
    assert.equal(await a.tryReserve(db, id, 'proc0', 'site1/a'), 'reserved');
    // Another copy of the document offered while the first claim is out: were it reserved again,
    // its lost claim's release would free the key the first attempt holds (a double run seen on two sites).
    assert.equal(await a.tryReserve(db, id, 'proc0', 'site1/a'), 'taken', 'a second attempt in the process that holds the key is refused');
    assert.equal(await b.tryReserve(db, id, 'proc0', 'site2/b'), 'taken');
    assert.equal(await b.tryReserve(db, id, 'proc1', 'site2/b'), 'reserved', 'keys are per (doc, step)');
    await b.release(db, id, 'proc0', 'site2/b');
    assert.equal(await b.tryReserve(db, id, 'proc0', 'site2/b'), 'taken', 'a release by a non-holder changes nothing');
    await a.release(db, id, 'proc0', 'site1/a');
    assert.equal(await b.tryReserve(db, id, 'proc0', 'site2/b'), 'reserved', 'released, so free again');
    await b.complete(db, id, 'proc0', 'site2/b');
    assert.equal(await a.tryReserve(db, id, 'proc0', 'site1/a'), 'taken', 'a completed step stays taken until its key expires');

    const seen: Hint[] = [];
    const sub = b.subscribe(db, ['ready'], (_kind, hint) => seen.push(hint));
    await new Promise((r) => setTimeout(r, 100));
    a.publish('ready', { db, doc: id, step: 'proc1', site: 'site1' });
    a.publish('done', { db, doc: id, step: 'proc1', site: 'site1' });
    await waitFor('the hint', () => seen.length > 0, 5000, 10);
    sub.unsubscribe();
    assert.deepEqual(seen, [{ db, doc: id, step: 'proc1', site: 'site1' }]);
  });

  it('(a) a ready hint gets a document claimed quickly, with a long sweep; the changes feed alone measured alongside', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'], agent: { sweep_s: 30 } });
    await editConfig(mesh, (raw) => (raw.nats = { url: nats.url }));
    const probe = await testChannel(nats.url, 'probe');
    const claimedAt = new Map<string, number>();
    probe.subscribe(mesh.config.database, ['claimed'], (_kind, hint) => claimedAt.set(hint.doc, performance.now()));
    const agent = startAgent(mesh, 'quick');
    await waitFor(
      'the agent started on NATS',
      async () => (await logCount(mesh, 'quick', 'NATS connected')) > 0 && (await logCount(mesh, 'quick', 'agent started')) > 0,
    );

    const base = {
      type: 'daqdocument',
      run_name: 'lg23b002',
      size_in_bytes: 0,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: historyTo('closed', []),
    };
    const writes: number[] = [];
    const decided: Record<string, number[]> = { hinted: [], feed: [] };
    const trial = async (id: string, n: number, hinted: boolean): Promise<number> => {
      const wall = Date.now();
      const start = performance.now();
      await mesh.db.put({ ...base, _id: id, file_number: n, file: join(mesh.dir, 'daq', `lg23b002_${String(n).padStart(3, '0')}`) });
      writes.push(performance.now() - start);
      if (hinted) probe.publish('ready', { db: mesh.config.database, doc: id, step: 'proc0', site: 'test' });
      await waitFor(`${id} claimed`, () => claimedAt.has(id), 20_000, 1);
      // The claim's own clock reading (the agent's `now` when it built the claim), to split discovery from the write.
      // The agent runs one step at a time: the next trial starts once this step is finished.
      const doc = await waitFor(
        `${id} good`,
        async () => {
          const current = await mesh.db.get<DaqDocument>(id);
          return current?.status === 'good' ? current : undefined;
        },
        20_000,
        5,
      );
      const claimEntry = doc?.history.find((h) => h.to === 'proc0 in progress');
      if (claimEntry) decided[hinted ? 'hinted' : 'feed'].push(Date.parse(claimEntry.at) - wall);
      return (claimedAt.get(id) as number) - start;
    };
    // Warm-up: the agent's first sweep and its changes feed are running once this one is claimed.
    await trial('run_lg23b002_warmup', 999, true);
    const hinted: number[] = [];
    const feedOnly: number[] = [];
    for (let i = 0; i < 8; i++) {
      hinted.push(await trial(`run_lg23b002_h${i}`, i, true));
      feedOnly.push(await trial(`run_lg23b002_f${i}`, 100 + i, false));
    }
    await waitFor('every trial document good', async () => (await completeDocs(mesh.db, 'proc0')) === 17);
    await stopProcess(agent);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
    console.log(`      write→claim with a ready hint: median ${median(hinted).toFixed(1)} ms [${fmt(hinted)}]`);
    console.log(`      write→claim, changes feed only: median ${median(feedOnly).toFixed(1)} ms [${fmt(feedOnly)}] (sweep every 30 s)`);
    console.log(`      write→claim decided (agent clock, ms resolution): hint median ${median(decided.hinted)} ms, feed median ${median(decided.feed)} ms`);
    console.log(`      for scale, one document write (test → server): median ${median(writes).toFixed(1)} ms`);
  });

  it('(b) two sites on two servers that do not replicate: with the registry each (doc, step) runs once in total', async () => {
    const second = await startServerProcess({ site: 'beta' });
    try {
      const steps = ['proc0', 'proc1'];
      // The key of a completed step stays until the bucket TTL (longest lease + 25 % = 150 s) ends:
      // real servers replicate the result long before; these two never do, so the run must end first.
      const meshA = await makeMesh(server.url, { steps, lease_s: 120 });
      const meshB = await makeMesh(second.url, { steps, lease_s: 120, push: false });
      await editConfig(meshA, (raw) => (raw.nats = { url: nats.url }));
      // The same database name and step assignment, but another site and another server.
      await editConfig(meshB, (raw) => {
        raw.nats = { url: nats.url };
        raw.database = meshA.config.database;
        const sites = raw.sites as Record<string, unknown>;
        raw.sites = { beta: sites.alpha };
        raw.ingest = { ...(raw.ingest as object), site: 'beta' };
        for (const step of raw.steps) step.site = 'beta';
      });
      meshB.db = new Database({ url: second.url, database: meshB.config.database });
      await meshB.db.ensure();
      await pushDesign(meshB.db, designDocument(meshB.config));
      // 30 documents: both sites take part and the registry refuses claims (both asserted below);
      // each step is a node process, so more documents cost CPU, not proof.
      const ids = await seedDocuments(meshA, 30);
      await seedDocuments(meshB, 30);

      const agentA = startAgent(meshA, 'site-a', ['--concurrency', '4']);
      const agentB = spawnMeshProcess(['--config', meshB.configFile, 'agent', '--site', 'beta', '--name', 'site-b', '--concurrency', '4'], {
        logFile: join(meshB.dir, 'site-b.log'),
      });
      await waitFor(
        'every document complete on one of the two servers',
        async () => (await completeDocs(meshA.db, 'proc1')) + (await completeDocs(meshB.db, 'proc1')) >= ids.length,
        180_000,
        200,
      );
      await Promise.all([stopProcess(agentA), stopProcess(agentB)]);

      const [linesA, linesB] = [await runLines(meshA), await runLines(meshB)];
      const all = [...linesA, ...linesB];
      const counts = new Map<string, number>();
      for (const line of all) counts.set(line, (counts.get(line) ?? 0) + 1);
      for (const id of ids)
        for (const step of steps) assert.equal(counts.get(`${id} ${step}`), 1, `${id} ${step} ran ${counts.get(`${id} ${step}`) ?? 0} times`);
      assert.equal(all.length, ids.length * steps.length);
      const [countersA, countersB] = [await stoppedCounters(meshA, 'site-a'), await stoppedCounters(meshB, 'site-b')];
      console.log(
        `      site alpha ran ${linesA.length} steps, site beta ${linesB.length}; registry refusals: alpha ${countersA.taken_elsewhere}, beta ${countersB.taken_elsewhere}`,
      );
      assert.ok(linesA.length > 0 && linesB.length > 0, 'both sites took part');
      assert.ok(countersA.taken_elsewhere + countersB.taken_elsewhere > 0, 'the registry refused some claims');
    } finally {
      await second.stop();
    }
  });

  it('(c) NATS killed (SIGKILL) mid-run of 50 documents: the run completes, each (doc, step) once; agents reconnect after its restart', async () => {
    const steps = ['proc0', 'proc1'];
    const mesh = await makeMesh(server.url, { steps, stepArgs: () => ['--sleep', '30'] });
    await editConfig(mesh, (raw) => (raw.nats = { url: nats.url }));
    // 50 documents: the kill comes after 15 of the 100 steps, so most of the run (and many
    // claims) happen without NATS, which is what this test is about.
    const ids = await seedDocuments(mesh, 50);
    const names = ['steady-1', 'steady-2'];
    const agents = names.map((name) => startAgent(mesh, name, ['--concurrency', '3']));
    await waitFor('both agents on NATS', async () => (await Promise.all(names.map((n) => logCount(mesh, n, 'NATS connected')))).every((c) => c > 0));
    await waitFor('some progress', async () => (await runLines(mesh)).length >= 15, 60_000, 20);
    await nats.kill();
    const atKill = (await runLines(mesh)).length;
    await waitFor('every document complete', async () => (await completeDocs(mesh.db, 'proc1')) === ids.length, 240_000, 200);
    for (const name of names)
      assert.ok((await logCount(mesh, name, 'NATS disconnected; working through CouchDB alone until it is back')) > 0, `${name} noticed the outage`);

    await nats.restart();
    const reconnected = performance.now();
    await waitFor(
      'both agents reconnected',
      async () => (await Promise.all(names.map((n) => logCount(mesh, n, 'NATS reconnected')))).every((c) => c > 0),
      30_000,
    );
    console.log(
      `      ${atKill} of ${ids.length * steps.length} steps ran before the kill; agents reconnected ${(performance.now() - reconnected).toFixed(0)} ms after the restart`,
    );
    await Promise.all(agents.map((a) => stopProcess(a)));

    const lines = await runLines(mesh);
    const unique = new Set(lines);
    for (const id of ids) for (const step of steps) assert.ok(unique.has(`${id} ${step}`), `${id} ${step}`);
    assert.equal(lines.length, ids.length * steps.length, 'no step ran twice');
    assert.ok(atKill < lines.length / 2, `NATS was killed early in the run (${atKill} of ${lines.length} steps before)`);
  });
});
