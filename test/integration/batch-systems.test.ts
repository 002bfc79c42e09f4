/**
 * Lyon's batch path on real batch systems, one suite run on each (test/support/batch-cluster.ts
 * starts a private Slurm or Grid Engine cluster): `mesh agent --once` claims and submits, the
 * jobs run `mesh run-batch`, and the next passes find the jobs that were cancelled, failed,
 * ended without their documents, or (Grid Engine) stuck in an error state.
 */
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
import { historyTo } from '../../core/provenance.js';
import { countedAttempts } from '../../core/state.js';
import { type BatchCluster, type BatchSystemName, startBatchCluster } from '../support/batch-cluster.js';
import { NOOP, runMesh, uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, meshMain, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const SYSTEMS: BatchSystemName[] = ['slurm', 'sge'];
const LABEL: Record<BatchSystemName, string> = { slurm: 'Slurm', sge: 'Grid Engine' };
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
  raw: { sites: { lyon: { batch: { options: string[]; mesh: string[] } } } } & Record<string, unknown>;
  config: MeshConfig;
  db: Database;
  runLog: string;
}

const busy = (doc: DaqDocument) => / (queued|in progress)$/.test(doc.status);
const complete = (doc: DaqDocument) => doc.status === 'good' && STEPS.every((s) => (doc[s] as StepRecord | undefined)?.ok === true);
const record = (doc: DaqDocument, step = 'proc1') => stepRecord(doc, step) as StepRecord;

for (const system of SYSTEMS) {
  describe(`lyon on a real ${LABEL[system]}: mesh agent --once submits batch jobs`, function () {
    this.timeout(300_000);
    const madeDirs: string[] = [];
    let cluster: BatchCluster;
    let server: ServerProcess;
    /** The credentials the agents and jobs use: a Grid Engine job gets none of the submitter's environment, so only a password file. */
    let env: NodeJS.ProcessEnv;
    let fileEnv: NodeJS.ProcessEnv;
    let runs = 0;

    before(async () => {
      cluster = await startBatchCluster(system);
      server = await startServerProcess({ site: 'kit', env: { MESH_KIT_USER: ADMIN, MESH_KIT_PASSWORD: ADMIN_PASSWORD } });
      const users = new Database({ url: server.url, database: '_users', credentials: { user: ADMIN, password: ADMIN_PASSWORD } });
      for (const [name, password, role] of [
        [USER, PASSWORD, 'mesh-agent:lyon'],
        [INGEST.user, INGEST.password, 'mesh-agent:kit'],
      ]) {
        await users.put({ _id: `org.couchdb.user:${name}`, type: 'user', name, roles: [role], password });
      }
      const secrets = await mkdtemp(join(tmpdir(), 'mesh-batch-secrets-'));
      madeDirs.push(secrets);
      const passwordFile = join(secrets, 'kit.password');
      await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
      // The password file's path reaches the jobs in their job files, never the password.
      fileEnv = { ...cluster.env, MESH_KIT_USER: USER, MESH_KIT_PASSWORD: undefined, MESH_KIT_PASSWORD_FILE: passwordFile, MESH_LOG_LEVEL: 'info' };
      // With Slurm the password may also reach the jobs through the environment sbatch hands on (not shown by scontrol).
      env = system === 'slurm' ? { ...cluster.env, MESH_KIT_USER: USER, MESH_KIT_PASSWORD: PASSWORD, MESH_LOG_LEVEL: 'info' } : fileEnv;
    });
    afterEach(async () => {
      // Every job of the test ends: nothing of ours stays in the queue. A cancelled Slurm job
      // lingers a few seconds in state CG (completing) on a loaded machine, so this waits, bounded.
      let queue: string[] = [];
      const drained = await waitFor(`the ${system} queue to drain`, async () => (queue = await cluster.activeJobs()).length === 0, 30_000, 500).catch(
        () => false,
      );
      assert.ok(drained, `jobs left in the ${system} queue: ${queue.join(', ')}`);
    });
    after(async () => {
      await server?.stop();
      await stopAllServerProcesses();
      await cluster?.stop();
      await Promise.all(madeDirs.map((dir) => rm(dir, { recursive: true, force: true })));
    });

    /** A kit server with lyon running both steps as batch jobs, `docs_per_job` 5, in a fresh database; `sleepMs` makes proc1 last that long. */
    async function makeLyon(options: { sleepMs?: number; batchOptions?: string[]; mesh?: string[] } = {}): Promise<LyonMesh> {
      const dir = await mkdtemp(join(tmpdir(), 'mesh-lyon-'));
      madeDirs.push(dir);
      const runLog = join(dir, 'runs.log');
      const raw = {
        database: uniqueDatabase(system),
        doc_type: 'daqdocument',
        sites: {
          kit: { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'kit') },
          lyon: {
            server: server.url,
            reachable: true,
            long_running: false,
            credentials_of: 'kit',
            log_dir: join(dir, 'logs', 'lyon'),
            batch: { system, options: options.batchOptions ?? [], docs_per_job: 5, mesh: options.mesh ?? [process.execPath, meshMain] },
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
            ...(options.sleepMs && name === 'proc1' ? ['--sleep', String(options.sleepMs)] : []),
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
      const db = new Database({ url: server.url, database: config.database, credentials: { user: ADMIN, password: ADMIN_PASSWORD } });
      await db.ensure();
      await pushDesign(db, designDocument(config));
      await pushSecurity(db, Object.keys(config.sites));
      await mkdir(join(dir, 'daq'), { recursive: true });
      return { dir, configFile, raw, config, db, runLog };
    }

    /** Changes lyon's batch profile for the next passes. */
    async function setBatch(mesh: LyonMesh, batch: { options?: string[]; mesh?: string[] }): Promise<void> {
      Object.assign(mesh.raw.sites.lyon.batch, batch);
      await writeFile(mesh.configFile, JSON.stringify(mesh.raw, null, 2));
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

    async function once(mesh: LyonMesh, withEnv: NodeJS.ProcessEnv = env): Promise<string> {
      const result = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'lyon', '--once', '--name', `lyon-once-${++runs}`], withEnv, 60_000);
      assert.equal(result.status, 0, `mesh agent --once exited with ${result.status}:\n${result.stderr}\n${result.stdout}`);
      return result.stdout + result.stderr;
    }

    /** Passes (what the trigger or cron does) whenever nothing is in flight, until the document is complete. */
    async function completes(mesh: LyonMesh, id: string, withEnv: NodeJS.ProcessEnv = env): Promise<DaqDocument> {
      return waitFor(
        `${id} to complete`,
        async () => {
          const doc = await mesh.db.get<DaqDocument>(id);
          if (doc && !busy(doc) && !complete(doc)) await once(mesh, withEnv);
          return doc && complete(doc) ? doc : undefined;
        },
        120_000,
        500,
      );
    }

    async function queuedJob(mesh: LyonMesh, id: string): Promise<string> {
      const doc = await mesh.db.get<DaqDocument>(id);
      assert.equal(doc?.status, 'proc1 queued');
      const job = record(doc!).batch?.id;
      assert.match(String(job), /^\d+$/);
      return job!;
    }

    async function ended(job: string): Promise<void> {
      await waitFor(`job ${job} to end`, async () => cluster.ended(await cluster.jobState(job)), 30_000, 200);
    }

    /** The history entry that made proc1 ready again, and its note. */
    function lostNote(doc: DaqDocument, from: 'proc1 queued' | 'proc1 in progress'): string {
      const lost = doc.history.find((h) => h.from === from && h.to === 'closed');
      assert.ok(lost, `a lost entry from ${from} back to closed in ${JSON.stringify(doc.history.map((h) => h.to))}`);
      return lost.note ?? '';
    }

    it('12 documents, 2 steps, 5 per job: queued → in progress → good, every step run once, no password anywhere', async () => {
      const mesh = await makeLyon();
      const ids = await seed(mesh, 12);
      const started = Date.now();
      const shown = new Map<string, string>();
      const look = async (jobIds: Iterable<string>) => {
        for (const id of jobIds) if (!shown.has(id)) shown.set(id, await cluster.shown(id));
      };
      await once(mesh);
      const queued = await allDocs(mesh);
      assert.ok(
        queued.every((d) => d.status !== 'closed'),
        'every ready document was claimed',
      );
      const jobIds = new Set(queued.map((d) => record(d).batch?.id as string));
      assert.equal(jobIds.size, 3, `12 documents at 5 per job make 3 jobs (got ${[...jobIds].join(', ')})`);
      for (const id of jobIds) assert.match(String(id), /^\d+$/);
      // What the scheduler shows of a job it still holds (Grid Engine forgets it when it ends).
      await look(jobIds);
      for (const id of jobIds) assert.match(shown.get(id)!, system === 'slurm' ? new RegExp(`JobId=${id}\\b`) : new RegExp(`^job_number:\\s+${id}$`, 'm'));

      const allIds = new Set<string>(jobIds);
      let passes = 1;
      while (!(await allDocs(mesh)).every(complete)) {
        await waitFor('the submitted jobs to finish their documents', async () => !(await allDocs(mesh)).some(busy), 120_000, 200);
        if ((await allDocs(mesh)).every(complete)) break;
        await once(mesh);
        passes++;
        for (const d of await allDocs(mesh)) for (const s of STEPS) if (stepRecord(d, s)?.batch?.id) allIds.add(stepRecord(d, s)!.batch!.id!);
        await look(allIds);
        assert.ok(passes <= 6, 'everything should be complete after a few passes');
      }
      const elapsed = Date.now() - started;

      const docs = await allDocs(mesh);
      assert.equal(docs.length, 12);
      for (const doc of docs) {
        for (const step of STEPS) {
          const rec = record(doc, step);
          assert.equal(rec.ok, true, `${doc._id} ${step}`);
          assert.equal(rec.attempts, 1, `${doc._id} ${step} attempts`);
          assert.equal(rec.batch?.system, system);
          // The original scripts' readers: the job number in the record, the submission in batchJob.
          assert.equal(typeof rec.batchjob, 'number', `${doc._id} ${step}.batchjob is the job number`);
          assert.equal(String(rec.batchjob), rec.batch?.id);
          assert.ok(
            doc.batchJob?.some((job) => job.number === rec.batchjob && job.type === system && job.stdout === rec.batch?.stdout && job.script.endsWith('.sh')),
            `${doc._id} batchJob lists job ${rec.batchjob}`,
          );
          assert.equal(rec.hostname, rec.host);
          assert.equal(rec.date, rec.finished);
          const path = doc.history.filter((h) => h.to.startsWith(step) || h.from?.startsWith(step)).map((h) => h.to);
          assert.deepEqual(path, [`${step} queued`, `${step} in progress`, 'good'], `${doc._id} ${step} history`);
        }
      }
      const lines = (await readFile(mesh.runLog, 'utf8')).split('\n').filter(Boolean).sort();
      assert.deepEqual(lines, ids.flatMap((id) => STEPS.map((s) => `${id} ${s}`)).sort(), 'every (document, step) ran exactly once');

      // The password is in no document, no job file or script, and not in what the scheduler shows of the jobs.
      const everything = JSON.stringify(await mesh.db.allDocs({ include_docs: true }));
      assert.ok(!everything.includes(PASSWORD), 'a document holds the password');
      for (const [id, text] of shown) assert.ok(!text.includes(PASSWORD), `what ${system} shows of job ${id} holds the password`);
      const batchDir = join(mesh.dir, 'logs', 'lyon', 'batch');
      for (const name of await readdir(batchDir)) {
        const file = join(batchDir, name);
        const text = await readFile(file, 'utf8');
        assert.ok(!text.includes(PASSWORD), `${name} holds the password`);
        if (name.endsWith('.sh')) assert.equal((await stat(file)).mode & 0o777, 0o700, `${name} mode`);
        if (name.endsWith('.json')) {
          assert.equal((await stat(file)).mode & 0o777, 0o600, `${name} mode`);
          if (env === fileEnv) assert.deepEqual(JSON.parse(text).credentials, { user: USER, password_file: fileEnv.MESH_KIT_PASSWORD_FILE });
        }
      }
      console.log(`      ${ids.length} documents × ${STEPS.length} steps in ${allIds.size} ${system} jobs, ${passes} passes, ${(elapsed / 1000).toFixed(1)} s`);
    });

    it('a running job cancelled by the operator: the next --once makes the document ready again (attempts kept) and it completes', async () => {
      const mesh = await makeLyon({ sleepMs: 4000 });
      const [id] = await seed(mesh, 1);
      await once(mesh);
      const running = await waitFor('proc1 in progress', async () => {
        const doc = await mesh.db.get<DaqDocument>(id);
        return doc?.status === 'proc1 in progress' && record(doc).batch?.id ? doc : undefined;
      });
      const job = record(running).batch!.id!;
      await cluster.cancel(job);
      await ended(job);
      const output = await once(mesh);
      assert.match(output, /was cancelled/);
      const done = await completes(mesh, id);
      assert.equal(record(done).attempts, 2, 'the lost attempt counts: attempts kept (1), then the new claim (2)');
      assert.match(lostNote(done, 'proc1 in progress'), new RegExp(`batch job ${job} was cancelled`));
      assert.notEqual(record(done).batch?.id, job, 'the document completed in a new job');
    });

    it('a queued (held) job cancelled by the operator: the next --once makes the document ready again and it completes', async () => {
      const mesh = await makeLyon({ batchOptions: [...cluster.holdOptions] });
      const [id] = await seed(mesh, 1);
      // This time the password comes from a 0600 file: the job file names the file, never the password.
      await once(mesh, fileEnv);
      const job = await queuedJob(mesh, id);
      assert.equal(await cluster.jobState(job), cluster.heldState);
      assert.ok(
        Date.parse(record((await mesh.db.get<DaqDocument>(id))!).lease_until!) > Date.now() + 24 * 3600 * 1000,
        'a queued document is not reclaimed by the lease sweeper while it waits',
      );
      await cluster.cancel(job);
      await ended(job);
      // From now on jobs are not held.
      await setBatch(mesh, { options: [] });
      // Known at once to have ended (Grid Engine: listed among the finished jobs, without accounting): no grace to wait.
      assert.match(await once(mesh, fileEnv), new RegExp(`batch job ${job} was cancelled`));
      const done = await completes(mesh, id, fileEnv);
      // The job never started it: that attempt keeps its number but is not counted.
      assert.deepEqual([record(done).attempts, countedAttempts(record(done))], [2, 1], `${done._id}: attempts, counted`);
      const batchDir = join(mesh.dir, 'logs', 'lyon', 'batch');
      const jobFiles = (await readdir(batchDir)).filter((n) => n.endsWith('.json'));
      assert.ok(jobFiles.length >= 2);
      for (const name of jobFiles) {
        const text = await readFile(join(batchDir, name), 'utf8');
        assert.deepEqual(JSON.parse(text).credentials, { user: USER, password_file: fileEnv.MESH_KIT_PASSWORD_FILE });
        assert.ok(!text.includes(PASSWORD));
      }
      assert.ok(!JSON.stringify(await mesh.db.allDocs({ include_docs: true })).includes(PASSWORD));
      assert.match(lostNote(done, 'proc1 queued'), new RegExp(`batch job ${job} was cancelled`));
    });

    it('a job that fails before running its documents (no mesh where batch.mesh says): the next --once makes them ready again', async () => {
      const mesh = await makeLyon({ mesh: [join(tmpdir(), 'no-such-folder', 'mesh')] });
      const [id] = await seed(mesh, 1);
      await once(mesh);
      const job = await queuedJob(mesh, id);
      const stderr = record((await mesh.db.get<DaqDocument>(id))!).batch!.stderr!;
      await ended(job);
      assert.match(await readFile(stderr, 'utf8'), /no-such-folder\/mesh.*not found/, 'the job failed because its mesh is not there');
      await setBatch(mesh, { mesh: [process.execPath, meshMain] });
      const output = await once(mesh);
      assert.match(output, new RegExp(`batch job ${job} failed`));
      const done = await completes(mesh, id);
      // The job never started it: that attempt keeps its number but is not counted.
      assert.deepEqual([record(done).attempts, countedAttempts(record(done))], [2, 1], `${done._id}: attempts, counted`);
      assert.match(lostNote(done, 'proc1 queued'), new RegExp(`batch job ${job} failed`));
    });

    it('a job that ends without recording its documents (Grid Engine then forgets it): the next --once makes them ready again at once', async () => {
      // A "mesh" that succeeds without doing anything: the job exits 0 and the document stays queued.
      const mesh = await makeLyon({ mesh: ['/bin/true'] });
      const [id] = await seed(mesh, 1);
      await once(mesh);
      const job = await queuedJob(mesh, id);
      await ended(job);
      // Grid Engine has forgotten the job by now (its accounting says how it ended); Slurm still lists it COMPLETED.
      assert.equal(await cluster.jobState(job), system === 'sge' ? 'gone' : 'COMPLETED');
      await setBatch(mesh, { mesh: [process.execPath, meshMain] });
      const before = Date.now();
      const output = await once(mesh);
      assert.match(output, new RegExp(`batch job ${job} ended without recording a result`));
      assert.ok(Date.now() - before < 30_000, 'no grace period for a job whose end the scheduler knows');
      const done = await completes(mesh, id);
      // The job never started it: that attempt keeps its number but is not counted.
      assert.deepEqual([record(done).attempts, countedAttempts(record(done))], [2, 1], `${done._id}: attempts, counted`);
      assert.match(lostNote(done, 'proc1 queued'), new RegExp(`batch job ${job} ended without recording a result`));
    });

    if (system === 'sge') {
      it('a job stuck in error state (Eqw: its output file cannot be opened): the next --once makes the document ready again and deletes the job', async () => {
        // Found here: a `-o` into a folder that does not exist on the execution host (or a `-S`
        // shell that does not exist) leaves the job in Eqw for good, until someone deletes it.
        const mesh = await makeLyon();
        await setBatch(mesh, { options: ['-o', join(mesh.dir, 'not-mounted', 'job.out')] });
        const [id] = await seed(mesh, 1);
        await once(mesh);
        const job = await queuedJob(mesh, id);
        await waitFor(`job ${job} in Eqw`, async () => (await cluster.jobState(job)) === 'Eqw', 30_000, 200);
        assert.match(await cluster.shown(job), /^error reason\s+1:.*can't open output file/m);
        await setBatch(mesh, { options: [] });
        const output = await once(mesh);
        assert.match(output, new RegExp(`batch job ${job} is in an error state`));
        assert.match(output, new RegExp(`deleted sge job ${job}`));
        assert.equal(await cluster.jobState(job), 'gone', 'the stuck job was deleted: it cannot start later');
        const done = await completes(mesh, id);
        // The job never started it: that attempt keeps its number but is not counted.
        assert.deepEqual([record(done).attempts, countedAttempts(record(done))], [2, 1], `${done._id}: attempts, counted`);
        assert.match(lostNote(done, 'proc1 queued'), new RegExp(`batch job ${job} is in an error state`));
        assert.notEqual(record(done).batch?.id, job);
      });
    }
  });
}
