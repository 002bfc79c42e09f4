import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { Database } from '../../store/database.js';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { NOOP, runMesh, uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, meshMain, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';
import { type SlurmCluster, startSlurm } from '../support/slurm.js';
import { historyTo } from '../../core/provenance.js';

const ADMIN = 'kitadmin';
const ADMIN_PASSWORD = `pw-${Math.random().toString(36).slice(2)}-secret`;
/** Lyon's agents and jobs write as lyon's agent account; files are catalogued by kit's (the ingest site here). */
const USER = 'lyon-agent';
const PASSWORD = `pw-${Math.random().toString(36).slice(2)}-agent`;
const INGEST = { user: 'kit-ingest', password: `pw-${Math.random().toString(36).slice(2)}-ingest` };
const STEPS = ['proc1', 'proc2'];

interface LyonMesh {
  dir: string;
  configFile: string;
  raw: Record<string, unknown>;
  config: MeshConfig;
  db: Database;
  runLog: string;
}

/** A kit server with lyon running both steps as Slurm jobs, `docs_per_job` 5, in a fresh database. */
async function makeLyon(url: string, options: { sleepMs?: number; batchOptions?: string[] } = {}): Promise<LyonMesh> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-lyon-'));
  madeDirs.push(dir);
  const runLog = join(dir, 'runs.log');
  const raw = {
    database: uniqueDatabase('slurm'),
    doc_type: 'daqdocument',
    sites: {
      kit: { server: url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'kit') },
      lyon: {
        server: url,
        reachable: true,
        long_running: false,
        credentials_of: 'kit',
        log_dir: join(dir, 'logs', 'lyon'),
        batch: { system: 'slurm', options: options.batchOptions ?? [], docs_per_job: 5, mesh: [process.execPath, meshMain] },
      },
    },
    ingest: { site: 'kit', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: STEPS.map((name) => ({
      name,
      site: 'lyon',
      run: [
        process.execPath,
        NOOP,
        '--log',
        runLog,
        '--doc',
        '{doc_id}',
        '--step',
        '{step}',
        '--touch',
        '{out}',
        ...(options.sleepMs ? ['--sleep', String(options.sleepMs)] : []),
      ],
      out: join(dir, 'out', name, '{run_name}_{file_number}'),
      timeout_s: 60,
      max_attempts: 3,
      lease_s: 10,
    })),
    agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
  };
  const configFile = join(dir, 'mesh.json');
  await writeFile(configFile, JSON.stringify(raw, null, 2));
  const config = parseMeshConfig(raw, configFile);
  const db = new Database({ url, database: config.database, credentials: { user: ADMIN, password: ADMIN_PASSWORD } });
  await db.ensure();
  await pushDesign(db, designDocument(config));
  await pushSecurity(db, Object.keys(config.sites));
  await mkdir(join(dir, 'daq'), { recursive: true });
  return { dir, configFile, raw, config, db, runLog };
}

async function seed(mesh: LyonMesh, count: number): Promise<string[]> {
  const docs = Array.from({ length: count }, (_, i) => ({
    _id: `run_lg23b002_${String(i).padStart(3, '0')}`,
    type: 'daqdocument',
    run_name: 'lg23b002',
    file_number: i,
    file: join(mesh.dir, 'daq', `lg23b002_${String(i).padStart(3, '0')}`),
    size_in_bytes: 0,
    date_closed: new Date().toISOString(),
    status: 'closed',
    history: historyTo('closed', [], undefined, 'kit/ingest', INGEST.user),
  }));
  const refused = (await new Database({ url: mesh.db.url, database: mesh.db.name, credentials: INGEST }).bulk(docs)).filter((r) => r.error);
  assert.deepEqual(refused, [], 'the ingest account catalogues the files');
  return docs.map((d) => d._id);
}

async function allDocs(mesh: LyonMesh): Promise<DaqDocument[]> {
  const { rows } = await mesh.db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
  return rows.map((r) => r.doc as DaqDocument);
}

const madeDirs: string[] = [];

const busy = (doc: DaqDocument) => / (queued|in progress)$/.test(doc.status);
const complete = (doc: DaqDocument) => doc.status === 'good' && STEPS.every((s) => (doc[s] as StepRecord | undefined)?.ok === true);

describe('lyon on a real Slurm: mesh agent --once submits batch jobs', function () {
  this.timeout(300_000);
  let slurm: SlurmCluster;
  let server: ServerProcess;
  let env: NodeJS.ProcessEnv;
  let runs = 0;

  before(async () => {
    slurm = await startSlurm();
    server = await startServerProcess({ site: 'kit', env: { MESH_KIT_USER: ADMIN, MESH_KIT_PASSWORD: ADMIN_PASSWORD } });
    const users = new Database({ url: server.url, database: '_users', credentials: { user: ADMIN, password: ADMIN_PASSWORD } });
    for (const [name, password, role] of [
      [USER, PASSWORD, 'mesh-agent:lyon'],
      [INGEST.user, INGEST.password, 'mesh-agent:kit'],
    ]) {
      await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles: [role], password });
    }
    // The password reaches the jobs only through the environment sbatch hands on.
    env = { ...slurm.env, MESH_KIT_USER: USER, MESH_KIT_PASSWORD: PASSWORD, MESH_LOG_LEVEL: 'info' };
  });
  afterEach(async () => {
    // Every job of the test ends: nothing of ours stays in the queue. A cancelled job lingers a
    // few seconds in state CG (completing) on a loaded machine, so this waits, bounded.
    let queue = '';
    const drained = await waitFor('the Slurm queue to drain', async () => (queue = (await slurm.squeue()).trim()) === '' || undefined, 30_000, 500).catch(
      () => false,
    );
    assert.ok(drained, `jobs left in the Slurm queue:\n${queue}`);
  });
  after(async () => {
    await server?.stop();
    await stopAllServerProcesses();
    await slurm?.stop();
    await Promise.all(madeDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  async function once(mesh: LyonMesh, withEnv: NodeJS.ProcessEnv = env): Promise<string> {
    const result = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'lyon', '--once', '--name', `lyon-once-${++runs}`], withEnv, 60_000);
    assert.equal(result.status, 0, `mesh agent --once exited with ${result.status}:\n${result.stderr}\n${result.stdout}`);
    return result.stdout + result.stderr;
  }

  async function jobState(id: string): Promise<string> {
    const line = await slurm.scontrol(['show', 'job', '-o', id]).catch(() => '');
    return /JobState=(\S+)/.exec(line)?.[1] ?? 'gone';
  }

  it('12 documents, 2 steps, 5 per job: queued → in progress → good, every step run once, no password anywhere', async () => {
    const mesh = await makeLyon(server.url);
    const ids = await seed(mesh, 12);
    const started = Date.now();
    await once(mesh);
    const queued = await allDocs(mesh);
    assert.ok(
      queued.every((d) => d.status !== 'closed'),
      'every ready document was claimed',
    );
    const jobIds = new Set(queued.map((d) => (stepRecord(d, 'proc1') as StepRecord).batch?.id));
    assert.equal(jobIds.size, 3, `12 documents at 5 per job make 3 jobs (got ${[...jobIds].join(', ')})`);
    for (const id of jobIds) assert.match(String(id), /^\d+$/);

    // Repeated passes (what the trigger or cron does) until everything is complete.
    const allIds = new Set<string>(jobIds as Set<string>);
    let passes = 1;
    while (!(await allDocs(mesh)).every(complete)) {
      await waitFor('the submitted jobs to finish their documents', async () => !(await allDocs(mesh)).some(busy), 120_000, 200);
      if ((await allDocs(mesh)).every(complete)) break;
      await once(mesh);
      passes++;
      for (const d of await allDocs(mesh)) for (const s of STEPS) if (stepRecord(d, s)?.batch?.id) allIds.add(stepRecord(d, s)!.batch!.id!);
      assert.ok(passes <= 6, 'everything should be complete after a few passes');
    }
    const elapsed = Date.now() - started;

    const docs = await allDocs(mesh);
    assert.equal(docs.length, 12);
    for (const doc of docs) {
      for (const step of STEPS) {
        const record = doc[step] as StepRecord;
        assert.equal(record.ok, true, `${doc._id} ${step}`);
        assert.equal(record.attempts, 1, `${doc._id} ${step} attempts`);
        assert.equal(record.batch?.system, 'slurm');
        // The original scripts' readers: the job number in the record, the submission in batchJob.
        assert.equal(typeof record.batchjob, 'number', `${doc._id} ${step}.batchjob is the job number`);
        assert.equal(String(record.batchjob), record.batch?.id);
        assert.ok(
          doc.batchJob?.some(
            (job) => job.number === record.batchjob && job.type === 'slurm' && job.stdout === record.batch?.stdout && job.script.endsWith('.sh'),
          ),
          `${doc._id} batchJob lists job ${record.batchjob}`,
        );
        assert.equal(record.hostname, record.host);
        assert.equal(record.date, record.finished);
        const path = doc.history.filter((h) => h.to.startsWith(step) || h.from?.startsWith(step)).map((h) => h.to);
        assert.deepEqual(path, [`${step} queued`, `${step} in progress`, 'good'], `${doc._id} ${step} history`);
      }
    }
    const lines = (await readFile(mesh.runLog, 'utf8')).split('\n').filter(Boolean).sort();
    assert.deepEqual(lines, ids.flatMap((id) => STEPS.map((s) => `${id} ${s}`)).sort(), 'every (document, step) ran exactly once');

    // The password is in no document, no job file or script, and not in what Slurm shows of the jobs.
    const everything = JSON.stringify(await mesh.db.allDocs({ include_docs: true }));
    assert.ok(!everything.includes(PASSWORD), 'a document holds the password');
    for (const id of allIds) {
      const shown = (await slurm.scontrol(['show', 'job', '-o', id])) + (await slurm.scontrol(['show', 'job', '-dd', id]));
      assert.match(shown, new RegExp(`JobId=${id}\\b`));
      assert.ok(!shown.includes(PASSWORD), `scontrol show job ${id} shows the password`);
    }
    const batchDir = join(mesh.dir, 'logs', 'lyon', 'batch');
    for (const name of await readdir(batchDir)) {
      const file = join(batchDir, name);
      assert.ok(!(await readFile(file, 'utf8')).includes(PASSWORD), `${name} holds the password`);
      if (name.endsWith('.sh')) assert.equal((await stat(file)).mode & 0o777, 0o700, `${name} mode`);
      if (name.endsWith('.json')) assert.equal((await stat(file)).mode & 0o777, 0o600, `${name} mode`);
    }
    console.log(`      ${ids.length} documents × ${STEPS.length} steps in ${allIds.size} Slurm jobs, ${passes} passes, ${(elapsed / 1000).toFixed(1)} s`);
  });

  it('a running job cancelled with scancel: the next --once makes the document ready again (attempts kept) and it completes', async () => {
    const mesh = await makeLyon(server.url, { sleepMs: 4000 });
    const [id] = await seed(mesh, 1);
    await once(mesh);
    const running = await waitFor('proc1 in progress', async () => {
      const doc = await mesh.db.get<DaqDocument>(id);
      return doc?.status === 'proc1 in progress' && (stepRecord(doc, 'proc1') as StepRecord).batch?.id ? doc : undefined;
    });
    const job = (stepRecord(running, 'proc1') as StepRecord).batch!.id!;
    await runScancel(job);
    await waitFor(`job ${job} cancelled`, async () => (await jobState(job)) === 'CANCELLED', 30_000);
    const output = await once(mesh);
    assert.match(output, /was cancelled/);
    const done = await waitFor(
      'the document to complete',
      async () => {
        const doc = await mesh.db.get<DaqDocument>(id);
        if (doc && !busy(doc) && !complete(doc)) await once(mesh);
        return doc && complete(doc) ? doc : undefined;
      },
      120_000,
      500,
    );
    const record = stepRecord(done, 'proc1') as StepRecord;
    assert.equal(record.attempts, 2, 'the lost attempt counts: attempts kept (1), then the new claim (2)');
    const lost = done.history.find((h) => h.from === 'proc1 in progress' && h.to === 'closed');
    assert.ok(lost, 'a lost entry from proc1 in progress back to closed');
    assert.match(lost.note ?? '', new RegExp(`batch job ${job} was cancelled`));
    assert.notEqual(record.batch?.id, job, 'the document completed in a new job');
  });

  it('a queued (held) job cancelled with scancel: the next --once makes the document ready again and it completes', async () => {
    const mesh = await makeLyon(server.url, { batchOptions: ['--hold'] });
    const [id] = await seed(mesh, 1);
    // This time the password comes from a 0600 file: the job file names the file, never the password.
    const passwordFile = join(mesh.dir, 'kit.password');
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    const fileEnv = { ...slurm.env, MESH_KIT_USER: USER, MESH_KIT_PASSWORD: undefined, MESH_KIT_PASSWORD_FILE: passwordFile };
    await once(mesh, fileEnv);
    const queued = await mesh.db.get<DaqDocument>(id);
    assert.equal(queued?.status, 'proc1 queued');
    const job = (stepRecord(queued!, 'proc1') as StepRecord).batch!.id!;
    assert.equal(await jobState(job), 'PENDING');
    assert.ok(
      Date.parse((stepRecord(queued!, 'proc1') as StepRecord).lease_until!) > Date.now() + 24 * 3600 * 1000,
      'a queued document is not reclaimed by the lease sweeper while it waits',
    );
    await runScancel(job);
    await waitFor(`job ${job} cancelled`, async () => (await jobState(job)) === 'CANCELLED', 30_000);
    // From now on jobs are not held.
    (mesh.raw.sites as { lyon: { batch: { options: string[] } } }).lyon.batch.options = [];
    await writeFile(mesh.configFile, JSON.stringify(mesh.raw, null, 2));
    await once(mesh, fileEnv);
    const done = await waitFor(
      'the document to complete',
      async () => {
        const doc = await mesh.db.get<DaqDocument>(id);
        if (doc && !busy(doc) && !complete(doc)) await once(mesh, fileEnv);
        return doc && complete(doc) ? doc : undefined;
      },
      120_000,
      500,
    );
    assert.equal((stepRecord(done, 'proc1') as StepRecord).attempts, 2);
    const batchDir = join(mesh.dir, 'logs', 'lyon', 'batch');
    const jobFiles = (await readdir(batchDir)).filter((n) => n.endsWith('.json'));
    assert.ok(jobFiles.length >= 2);
    for (const name of jobFiles) {
      const text = await readFile(join(batchDir, name), 'utf8');
      assert.deepEqual(JSON.parse(text).credentials, { user: USER, password_file: passwordFile });
      assert.ok(!text.includes(PASSWORD));
    }
    assert.ok(!JSON.stringify(await mesh.db.allDocs({ include_docs: true })).includes(PASSWORD));
    const lost = done.history.find((h) => h.from === 'proc1 queued' && h.to === 'closed');
    assert.match(lost?.note ?? '', new RegExp(`batch job ${job} was cancelled`));
  });

  async function runScancel(job: string): Promise<void> {
    const { execFile } = await import('node:child_process');
    await new Promise<void>((resolve, reject) =>
      execFile('scancel', [job], { env: { ...process.env, ...slurm.env } }, (error) => (error ? reject(error) : resolve())),
    );
  }
});
