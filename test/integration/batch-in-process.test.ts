/**
 * The batch submitter's logic in process, in seconds: the real BatchSubmitter and the batch
 * job's run-step against a real embedded server over HTTP, with a batch system and a step the
 * test controls (the real Slurm and Grid Engine paths are batch-systems.test.ts). Checked: documents grouped by
 * docs_per_job, every claim queued before submission and recorded in batchJob[], each (doc,
 * step) run once through its job, a refused submission gives every claim back.
 */
import type { BatchState, BatchSubmission, BatchSystem } from '../../agents/batch/types.js';
import { embeddedServersForSuite } from '../support/in-process.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BatchSubmitter } from '../../agents/batch/submitter.js';
import { readJobFile } from '../../agents/batch/job-file.js';
import type { AgentContext, ClaimedStepRunner } from '../../agents/context.js';
import { runStep } from '../../agents/run-step.js';
import { apply } from '../../agents/writes.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { type DaqDocument, pendingRecord, stepRecord } from '../../core/document.js';
import { MeshError } from '../../core/errors.js';
import { silentLogger } from '../../core/log.js';
import { historyTo } from '../../core/provenance.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import * as files from '../../store/files.js';
import { setControl } from '../../coordinator/controls.js';

/** A batch system whose queue is a list: submissions are recorded, run when the test says. */
class ListedBatch implements BatchSystem {
  readonly name = 'slurm' as const;
  readonly submitted: Array<BatchSubmission & { id: string }> = [];
  /** What state() answers per job id (default pending), and the ids cancel() was called with. */
  readonly states = new Map<string, BatchState>();
  readonly cancelled: string[] = [];
  refuse = false;

  constructor(readonly jobInheritsEnvironment = true) {}

  async submit(job: BatchSubmission): Promise<string> {
    if (this.refuse) throw new MeshError('BATCH_FAILED', 'sbatch: error: invalid partition');
    const id = String(1000 + this.submitted.length);
    this.submitted.push({ ...job, id });
    return id;
  }

  async state(id: string): Promise<BatchState> {
    return this.states.get(id) ?? 'pending';
  }

  /** The jobs the scheduler would list as queued or running. */
  active(): string[] {
    return this.submitted.map((j) => j.id).filter((id) => ['pending', 'running'].includes(this.states.get(id) ?? 'pending'));
  }

  async cancel(id: string): Promise<void> {
    this.cancelled.push(id);
  }
}

describe('batch submitter in process: real submitter and server, a batch system and step the test controls', function () {
  const suite = embeddedServersForSuite('mesh-batch-inproc-', ['lyon']);
  let n = 0;

  async function setUp(count: number, batchSettings: Record<string, unknown> = {}, timeoutS = 60): Promise<{ config: MeshConfig; db: Database }> {
    const database = `batch_${n++}`;
    const config = parseMeshConfig(
      {
        database,
        doc_type: 'daqdocument',
        sites: {
          lyon: {
            server: suite.server('lyon').url,
            reachable: true,
            long_running: false,
            log_dir: join(suite.dir, 'logs', database),
            batch: { system: 'slurm', options: [], docs_per_job: 5, mesh: ['/bin/false'], ...batchSettings },
          },
        },
        ingest: { site: 'lyon', quiet_s: 1 },
        steps: ['proc0', 'proc1'].map((name) => ({
          name,
          site: 'lyon',
          run: ['/bin/true', '{file}'],
          out: join(suite.dir, 'out', name, '{run_name}_{file_number}'),
          max_attempts: 3,
          lease_s: 60,
          timeout_s: timeoutS,
        })),
        agent: { sweep_s: 1, heartbeat_s: 5, retry_base_s: 1, retry_cap_s: 10, grace_s: 5 },
      },
      join(suite.dir, `${database}.json`),
    );
    const db = new Database({ url: suite.server('lyon').url, database });
    await db.ensure();
    await pushDesigns(db, config);
    await db.bulk(
      Array.from({ length: count }, (_, i) => ({
        _id: `run_lg23b002_${String(i).padStart(3, '0')}`,
        type: 'daqdocument',
        run_name: 'lg23b002',
        file_number: i,
        file: `/data/lg23b002_${i}`,
        size_in_bytes: 1,
        date_closed: '2026-11-27T10:00:00.000Z',
        status: 'closed',
        history: historyTo('closed', []),
      })),
    );
    return { config, db };
  }

  function context(config: MeshConfig, db: Database, runStepFn?: ClaimedStepRunner): AgentContext {
    return {
      config,
      site: config.sites.lyon,
      name: 'lyon-batch',
      host: 'test-host',
      db,
      logger: silentLogger(),
      steps: config.steps,
      now: () => new Date(),
      ...(runStepFn ? { runStep: runStepFn } : {}),
    };
  }

  it('12 documents, 2 steps, 5 per job: 3 jobs per step, queued before submission, each (doc, step) run once through its job', async () => {
    const { config, db } = await setUp(12);
    const runs: string[] = [];
    const step: ClaimedStepRunner = async (ctx, claimed, stepName) => {
      runs.push(`${claimed._id}/${stepName}`);
      return {
        end: 'succeeded',
        doc: await apply(ctx, claimed, { type: 'succeed', step: stepName, agent: ctx.name, result: { exit_code: 0, duration_s: 0.001 } }),
      };
    };
    const batch = new ListedBatch();
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    for (const stepName of ['proc0', 'proc1']) {
      const before = batch.submitted.length;
      await submitter.pass();
      const jobs = batch.submitted.slice(before);
      assert.equal(jobs.length, 3, `${stepName}: 12 documents in jobs of 5`);
      assert.deepEqual(Object.fromEntries(await files.countByStatus(db)), { [`${stepName} queued`]: 12 }, 'every claim queued');
      // The job runs: its file names the documents, run-step starts each while it is queued for this job.
      for (const job of jobs) {
        const file = await readJobFile(job.script.replace(/\.sh$/, '.json'));
        assert.ok(file.docs.length <= 5 && file.docs.length > 0);
        for (const id of file.docs) {
          const outcome = await runStep(context(config, db, step), id, stepName, new AbortController().signal, { job: file.stdout });
          assert.equal(outcome.end, 'succeeded', JSON.stringify(outcome));
        }
        // A second run of the same job finds nothing queued for it: nothing runs twice.
        const again = await runStep(context(config, db, step), file.docs[0], stepName, new AbortController().signal, { job: file.stdout });
        assert.equal(again.end, 'skipped');
      }
    }
    assert.equal(runs.length, 24);
    assert.equal(new Set(runs).size, 24, 'each (doc, step) ran once');
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    for (const row of rows) {
      const doc = row.doc as DaqDocument;
      assert.equal(doc.status, 'good');
      assert.equal((doc.batchJob as unknown[]).length, 2, `${doc._id}: one batchJob entry per submission`);
      assert.deepEqual(
        [(doc.proc0 as { batchjob?: unknown }).batchjob, (doc.proc1 as { batchjob?: unknown }).batchjob].map((b) => typeof b),
        ['number', 'number'],
      );
    }
    assert.equal(submitter.counters.jobs, 6);
    assert.equal(submitter.counters.claimed, 24);
  });

  it('a paused step and a drained site: the submitter queues nothing of them, and does once resumed and undrained', async () => {
    const { config, db } = await setUp(6);
    const batch = new ListedBatch();
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    const why = { by: 'operator/test', why: 'farm maintenance' };
    await setControl(config, db, 'pause', 'proc0', why);
    await submitter.pass();
    assert.equal(batch.submitted.length, 0, 'a paused step was queued');
    await setControl(config, db, 'resume', 'proc0', why);
    await setControl(config, db, 'drain', 'lyon', why);
    await submitter.pass();
    assert.equal(batch.submitted.length, 0, 'a drained site queued work');
    assert.deepEqual(Object.fromEntries(await files.countByStatus(db)), { closed: 6 });
    await setControl(config, db, 'undrain', 'lyon', why);
    await submitter.pass();
    assert.equal(batch.submitted.length, 2, '6 documents in jobs of 5');
    assert.deepEqual(Object.fromEntries(await files.countByStatus(db)), { 'proc0 queued': 6 });
  });

  it('a refused submission gives every claim of the job back and fails the pass: the documents are ready again, with no attempt used', async () => {
    const { config, db } = await setUp(7);
    const batch = new ListedBatch();
    batch.refuse = true;
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    await assert.rejects(submitter.pass(), (error: unknown) => error instanceof MeshError && error.code === 'BATCH_FAILED');
    assert.equal(batch.submitted.length, 0);
    assert.equal(submitter.counters.released, 5, "the first job's 5 claims given back; the pass stopped there");
    assert.deepEqual(Object.fromEntries(await files.countByStatus(db)), { closed: 7 });
    assert.equal(await files.readyCount(db, 'proc0', new Date().toISOString()), 7, 'ready again at once');
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    const released = rows.filter((row) => pendingRecord(row.doc as DaqDocument, 'proc0'));
    assert.equal(released.length, 5);
    for (const row of released) assert.equal(pendingRecord(row.doc as DaqDocument, 'proc0')?.uncounted, 1, 'the released attempt is not counted');
  });

  it('batch.max_jobs 2: never more than 2 jobs queued or running; a slot that frees is filled; documents of a job that never started them are not charged', async () => {
    const { config, db } = await setUp(14, { max_jobs: 2 });
    const batch = new ListedBatch();
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    const check = async (jobs: number, queued: number) => {
      assert.equal(batch.submitted.length, jobs, 'jobs submitted so far');
      assert.ok(batch.active().length <= 2, `at most max_jobs active (${batch.active().join(', ')})`);
      assert.equal((await files.countByStatus(db)).get('proc0 queued') ?? 0, queued, 'documents queued');
    };
    await submitter.pass();
    await check(2, 10);
    assert.equal(submitter.counters.held_back, 4, 'the 4 documents beyond 2 jobs of 5 wait, unclaimed');
    await submitter.pass();
    await check(2, 10);
    // The first job ends without starting its documents (cancelled in the queue, killed, …).
    batch.states.set('1000', 'cancelled');
    await submitter.pass();
    await check(3, 10);
    assert.equal(submitter.counters.lost, 5, "the cancelled job's 5 documents were found lost");
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    const lost = rows.map((r) => r.doc as DaqDocument).filter((d) => d.history.some((h) => /batch job 1000 was cancelled/.test(h.note ?? '')));
    assert.equal(lost.length, 5);
    for (const doc of lost) {
      const record = pendingRecord(doc, 'proc0') ?? (doc.proc0 as { uncounted?: number; attempts?: number });
      assert.equal(record?.uncounted, 1, `${doc._id}: the attempt of a job that never started it is not counted`);
    }
    // Both slots busy again (jobs 1001, 1002): nothing more until one of them ends.
    await submitter.pass();
    await check(3, 10);
  });

  it('batch.walltime: a job holds only as many documents as fit by their timeout_s, and asks the scheduler for the walltime', async () => {
    const { config, db } = await setUp(7, { walltime: '100s' }, 30);
    assert.equal(config.sites.lyon.batch?.walltime_s, 100);
    const batch = new ListedBatch();
    await new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!).pass();
    assert.deepEqual(
      await Promise.all(batch.submitted.map(async (j) => (await readJobFile(j.script.replace(/\.sh$/, '.json'))).docs.length)),
      [3, 3, 1],
      '100 s fits 3 steps of 30 s: 7 documents in jobs of 3, not of docs_per_job 5',
    );
    for (const job of batch.submitted) {
      assert.deepEqual(job.options, ['--time=0:01:40'], 'the walltime asked of Slurm');
      assert.equal((await readJobFile(job.script.replace(/\.sh$/, '.json'))).walltime_s, 100, 'and told to the job');
    }
    // Read from the options the site already passes: the options stay as they are.
    const fromOptions = await setUp(9, { options: ['--partition=short', '--time=2'] }, 30);
    assert.equal(fromOptions.config.sites.lyon.batch?.walltime_s, 120);
    const batch2 = new ListedBatch();
    await new BatchSubmitter(context(fromOptions.config, fromOptions.db), batch2, fromOptions.config.sites.lyon.batch!).pass();
    assert.deepEqual(
      batch2.submitted.map((j) => j.options),
      [
        ['--partition=short', '--time=2'],
        ['--partition=short', '--time=2'],
        ['--partition=short', '--time=2'],
      ],
    );
  });

  it('a job stuck in an error state (Grid Engine Eqw): the sweep makes its documents ready again, then deletes the job', async () => {
    const { config, db } = await setUp(7);
    const batch = new ListedBatch();
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    await submitter.pass();
    assert.deepEqual(
      batch.submitted.map((j) => j.id),
      ['1000', '1001'],
    );
    batch.states.set('1000', 'stuck');
    await submitter.pass();
    assert.deepEqual(batch.cancelled, ['1000'], 'the stuck job deleted once, the waiting one left alone');
    assert.equal(submitter.counters.lost, 5);
    assert.deepEqual(
      batch.submitted.map((j) => j.id),
      ['1000', '1001', '1002'],
      'its documents went into a new job in the same pass',
    );
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    const moved = rows
      .map((r) => r.doc as DaqDocument)
      .filter((d) => d.history.some((h) => h.note?.startsWith('batch job 1000 is in an error state and will not start')));
    assert.equal(moved.length, 5);
    for (const doc of moved) assert.equal(stepRecord(doc, 'proc0')?.batch?.id, '1002');
    await submitter.pass();
    assert.deepEqual(batch.cancelled, ['1000'], 'nothing claimed by the stuck job any more: not deleted again');
  });

  it('a batch system whose jobs do not inherit the environment: no submission with a password that only the environment holds', async () => {
    const { config, db } = await setUp(2);
    const batch = new ListedBatch(false);
    const submitter = new BatchSubmitter(context(config, db), batch, config.sites.lyon.batch!);
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { MESH_LYON_USER: 'lyon-agent', MESH_LYON_PASSWORD: `pw-${Math.random().toString(36).slice(2)}-not-for-jobs` });
      await assert.rejects(
        submitter.pass(),
        (error: unknown) => error instanceof MeshError && error.code === 'CREDENTIALS_MISSING' && /MESH_LYON_PASSWORD_FILE/.test(error.message),
      );
      assert.equal(batch.submitted.length, 0);
      assert.deepEqual(Object.fromEntries(await files.countByStatus(db)), { closed: 2 }, 'nothing claimed');
      delete process.env.MESH_LYON_PASSWORD;
      process.env.MESH_LYON_PASSWORD_FILE = join(suite.dir, 'lyon.password');
      await submitter.pass();
      assert.equal(batch.submitted.length, 1);
      const file = await readJobFile(batch.submitted[0].script.replace(/\.sh$/, '.json'));
      assert.deepEqual(file.credentials, { user: 'lyon-agent', password_file: join(suite.dir, 'lyon.password') });
    } finally {
      for (const key of ['MESH_LYON_USER', 'MESH_LYON_PASSWORD', 'MESH_LYON_PASSWORD_FILE']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});
