/**
 * A job-limited site on a real batch system: `batch.max_jobs` holds the site to that many jobs
 * queued or running, the job stops starting documents when its walltime cannot fit the next
 * one, and a job that dies (killed at its walltime, cancelled) charges an attempt only to the
 * document it was running: the ones it never started are ready again with nothing counted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { historyTo } from '../../core/provenance.js';
import { countedAttempts } from '../../core/state.js';
import { designDocument } from '../../couchapp/design.js';
import { Database } from '../../store/database.js';
import { pushDesign } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { type BatchCluster, type BatchSystemName, startBatchCluster } from '../support/batch-cluster.js';
import { NOOP, runMesh, uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, meshMain, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';

const secret = (what: string) => `pw-${Math.random().toString(36).slice(2)}-${what}`;
const ADMIN = { user: 'kitadmin', password: secret('admin') };
const AGENT = { user: 'lyon-agent', password: secret('agent') };
const INGEST = { user: 'kit-ingest', password: secret('ingest') };
const SYSTEMS: BatchSystemName[] = ['slurm', 'sge'];

interface Site {
  dir: string;
  configFile: string;
  config: MeshConfig;
  db: Database;
  runLog: string;
}

describe('job-limited sites on real batch systems', function () {
  // One server (and its accounts) for both batch systems: every site has a database of its own.
  let server: ServerProcess;
  let secrets: string;
  before(async () => {
    server = await startServerProcess({ site: 'kit', env: { MESH_KIT_USER: ADMIN.user, MESH_KIT_PASSWORD: ADMIN.password } });
    const users = new Database({ url: server.url, database: '_users', credentials: ADMIN });
    for (const [account, role] of [
      [AGENT, 'mesh-agent:lyon'],
      [INGEST, 'mesh-agent:kit'],
    ] as const)
      await users.put({ _id: `org.couchdb.user:${account.user}`, type: 'user', name: account.user, roles: [role], password: account.password });
    // A password file, so that the same test runs on Grid Engine, whose jobs never get the submitter's environment.
    secrets = await mkdtemp(join(tmpdir(), 'mesh-limits-secret-'));
    await writeFile(join(secrets, 'kit.password'), `${AGENT.password}\n`, { mode: 0o600 });
  });
  after(async () => {
    await server?.stop();
    await stopAllServerProcesses();
    if (secrets) await rm(secrets, { recursive: true, force: true });
  });

  for (const system of SYSTEMS) {
    describe(`a job-limited site on a real ${system === 'slurm' ? 'Slurm' : 'Grid Engine'}: job quota, walltime, nothing charged that never ran`, function () {
      this.timeout(240_000);
      let cluster: BatchCluster;
      let env: NodeJS.ProcessEnv;
      const dirs: string[] = [];
      let passes = 0;

      before(async () => {
        cluster = await startBatchCluster(system);
        env = { ...cluster.env, MESH_KIT_USER: AGENT.user, MESH_KIT_PASSWORD_FILE: join(secrets, 'kit.password'), MESH_LOG_LEVEL: 'info' };
      });
      afterEach(async () => {
        // Nothing of a test stays in the queue for the next one.
        for (const id of await cluster.activeJobs()) await cluster.cancel(id).catch(() => undefined);
        await waitFor('the queue to drain', async () => (await cluster.activeJobs()).length === 0 || undefined, 60_000, 500);
      });
      after(async () => {
        await cluster?.stop();
        await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
      });

      /** Lyon running proc1 as batch jobs; kit catalogues. The step sleeps `sleepMs`. */
      async function makeSite(batch: Record<string, unknown>, step: { sleepMs: number; timeout_s: number }): Promise<Site> {
        const dir = await mkdtemp(join(tmpdir(), 'mesh-limits-'));
        dirs.push(dir);
        const runLog = join(dir, 'runs.log');
        const raw = {
          database: uniqueDatabase('limits'),
          doc_type: 'daqdocument',
          sites: {
            kit: { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'kit') },
            lyon: {
              server: server.url,
              reachable: true,
              long_running: false,
              credentials_of: 'kit',
              log_dir: join(dir, 'logs', 'lyon'),
              batch: { system, options: [], docs_per_job: 3, mesh: [process.execPath, meshMain], ...batch },
            },
          },
          ingest: { site: 'kit', quiet_s: 600 },
          steps: [
            {
              name: 'proc1',
              site: 'lyon',
              run: [process.execPath, NOOP, '--log', runLog, '--doc', '{doc_id}', '--step', '{step}', '--sleep', String(step.sleepMs)],
              out: join(dir, 'out', '{run_name}_{file_number}'),
              timeout_s: step.timeout_s,
              max_attempts: 3,
              lease_s: 10,
            },
          ],
          agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
        };
        const configFile = join(dir, 'mesh.json');
        await writeFile(configFile, JSON.stringify(raw, null, 2));
        const config = parseMeshConfig(raw, configFile);
        const db = new Database({ url: server.url, database: config.database, credentials: ADMIN });
        await db.ensure();
        await pushDesign(db, designDocument(config));
        await pushSecurity(db, Object.keys(config.sites));
        return { dir, configFile, config, db, runLog };
      }

      async function seed(site: Site, count: number): Promise<string[]> {
        const docs = Array.from({ length: count }, (_, i) => ({
          _id: `run_lg23b002_${String(i).padStart(3, '0')}`,
          type: 'daqdocument',
          run_name: 'lg23b002',
          file_number: i,
          file: join(site.dir, `lg23b002_${String(i).padStart(3, '0')}`),
          size_in_bytes: 0,
          date_closed: new Date().toISOString(),
          status: 'closed',
          history: historyTo('closed', [], undefined, 'kit/ingest', INGEST.user),
        }));
        const refused = (await new Database({ url: server.url, database: site.db.name, credentials: INGEST }).bulk(docs)).filter((r) => r.error);
        assert.deepEqual(refused, []);
        return docs.map((d) => d._id);
      }

      async function once(site: Site): Promise<string> {
        const result = await runMesh(['--config', site.configFile, 'agent', '--site', 'lyon', '--once', '--name', `lyon-once-${++passes}`], env, 60_000);
        assert.equal(result.status, 0, `mesh agent --once exited with ${result.status}:\n${result.stderr}\n${result.stdout}`);
        return result.stdout + result.stderr;
      }

      async function docs(site: Site): Promise<DaqDocument[]> {
        const { rows } = await site.db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
        return rows.map((r) => r.doc as DaqDocument);
      }

      const record = (doc: DaqDocument) => stepRecord(doc, 'proc1') as StepRecord;
      const ranLines = async (site: Site) => (await readFile(site.runLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);

      it('batch.max_jobs 2: two jobs queued, the rest wait unclaimed; a job that goes frees its slot, and its never-started document is not charged', async () => {
        const site = await makeSite({ docs_per_job: 1, max_jobs: 2, options: [...cluster.holdOptions] }, { sleepMs: 0, timeout_s: 60 });
        await seed(site, 5);
        const output = await once(site);
        assert.match(output, /3 ready document\(s\) wait: 2 jobs \(batch\.max_jobs\) are queued or running/);
        let jobs = await cluster.activeJobs();
        assert.equal(jobs.length, 2, `two jobs in the queue (${jobs.join(', ')})`);
        const statuses = (await docs(site)).map((d) => d.status).sort();
        assert.deepEqual(statuses, ['closed', 'closed', 'closed', 'proc1 queued', 'proc1 queued']);
        await once(site);
        assert.deepEqual((await cluster.activeJobs()).sort(), jobs.sort(), 'a second pass while both wait submits nothing');

        const [gone] = jobs;
        await cluster.cancel(gone);
        await waitFor(`job ${gone} to leave the queue`, async () => !(await cluster.activeJobs()).includes(gone) || undefined, 30_000, 200);
        await once(site);
        jobs = await cluster.activeJobs();
        assert.equal(jobs.length, 2, `the freed slot is filled, no more (${jobs.join(', ')})`);
        assert.ok(!jobs.includes(gone));
        const lost = (await docs(site)).find((d) => d.history.some((h) => h.note?.includes(`batch job ${gone} was cancelled`)));
        assert.ok(lost, 'the cancelled job’s document was found lost');
        // The same pass queued it again in the new job: attempt 2, of which only this one counts.
        assert.equal(lost.status, 'proc1 queued');
        assert.deepEqual(
          [record(lost).attempts, record(lost).uncounted, countedAttempts(record(lost))],
          [2, 1, 1],
          `${lost._id}: the attempt it never started is not counted`,
        );
        assert.deepEqual(await ranLines(site), [], 'no step ran (the jobs are held)');
      });

      it('the job starts a document after its first only while the walltime left fits the step’s timeout; it gives the rest back uncharged', async () => {
        // Packed for a timeout of 4 s: 3 documents fit a 12 s walltime. While the job waits, the
        // operator raises the step's timeout to 30 s: the job, which reads the config when it starts,
        // runs its first document anyway (a job that gave everything back would come back for ever)
        // and gives the other two back at once.
        const site = await makeSite({ walltime: 12, options: [...cluster.holdOptions] }, { sleepMs: 500, timeout_s: 4 });
        await seed(site, 3);
        await once(site);
        const [job] = await cluster.activeJobs();
        assert.ok(job, 'one job of 3 documents');
        const batchDir = join(site.dir, 'logs', 'lyon', 'batch');
        const jobFile = JSON.parse(
          await readFile(
            join(
              batchDir,
              (await readdir(batchDir)).find((n) => n.endsWith('.json'))!,
            ),
            'utf8',
          ),
        );
        assert.equal(jobFile.walltime_s, 12, 'the job knows its walltime');
        assert.equal(jobFile.docs.length, 3);
        const raw = JSON.parse(await readFile(site.configFile, 'utf8'));
        raw.steps[0].timeout_s = 30;
        await writeFile(site.configFile, JSON.stringify(raw, null, 2));
        await cluster.release(job);
        await waitFor(`job ${job} to end`, async () => !(await cluster.activeJobs()).includes(job) || undefined, 60_000, 300);
        const after = new Map((await docs(site)).map((d) => [d._id, d]));
        const [first, ...rest] = jobFile.docs as string[];
        assert.equal(after.get(first)?.status, 'good', 'the first document ran');
        for (const id of rest) {
          const doc = after.get(id)!;
          assert.equal(doc.status, 'closed', `${id} given back, ready`);
          assert.deepEqual([record(doc).attempts, countedAttempts(record(doc))], [1, 0], `${id}: given back uncharged`);
          assert.match(doc.history.at(-1)?.note ?? '', /the job stopped before its walltime \(\d+ s left, proc1 may take 30 s\); never started, not counted/);
        }
        assert.deepEqual(await ranLines(site), [`${first} proc1`], 'only the first document ran');
      });

      it('a job killed at a walltime CouchMesh did not know: the document it was running is charged, the two it never started are not', async () => {
        const site = await makeSite({ docs_per_job: 3, options: [...cluster.holdOptions] }, { sleepMs: 200_000, timeout_s: 300 });
        await seed(site, 3);
        await once(site);
        const [job] = await cluster.activeJobs();
        await cluster.limitWalltime(job, 10);
        await cluster.release(job);
        const running = await waitFor(
          'the first document in progress',
          async () => (await docs(site)).find((d) => d.status === 'proc1 in progress'),
          60_000,
          300,
        );
        await waitFor(`job ${job} killed at its walltime`, async () => !(await cluster.activeJobs()).includes(job) || undefined, 180_000, 1000);
        await once(site);
        // Found lost, ready again, and queued at once in a new (held) job by the same pass.
        const after = await docs(site);
        assert.deepEqual(
          after.map((d) => d.status),
          ['proc1 queued', 'proc1 queued', 'proc1 queued'],
        );
        for (const doc of after) {
          assert.ok(
            doc.history.some((h) => h.from === (doc._id === running._id ? 'proc1 in progress' : 'proc1 queued') && h.to === 'closed'),
            `${doc._id} was made ready again`,
          );
          assert.equal(record(doc).attempts, 2);
          if (doc._id === running._id) assert.equal(countedAttempts(record(doc)), 2, `${doc._id} was running when the job died: charged`);
          else assert.equal(countedAttempts(record(doc)), 1, `${doc._id} never started: its first attempt is not charged`);
        }
        assert.deepEqual(await ranLines(site), [], 'nothing finished: the one step that started was killed with its job');
      });
    });
  }
});
