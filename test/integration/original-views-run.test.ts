/**
 * `_design/proc` on the documents of a real run, against the table written out again in
 * test/support/original-views.ts. An embedded server with accounts, the long-running agents of
 * modane (proc0) and kit (proc2) as processes, lyon's `mesh agent --once` submitting proc1 to a
 * private Slurm cluster, `MESH_FAULT_DIR` switches that make a document's step fail or hang
 * (they reach modane's and kit's agents only, never the Slurm jobs, so a switch placed once a
 * document passed proc0 acts on its proc2), and the operator's `mesh retry`. The run leaves a
 * document in every status; then every view and both filters are asked over HTTP and compared
 * with what the table makes of the documents read back.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'mocha';
import { Database } from '../../store/database.js';
import { type DaqDocument, type RunIdentity, type StepRecord, stepRecord } from '../../core/document.js';
import { historyTo } from '../../core/provenance.js';
import { testFolder } from '../support/folders.js';
import { NOOP, runMesh, spawnMeshProcess, stopAllMeshProcesses, stopProcess, uniqueDatabase, waitFor } from '../support/mesh.js';
import type { LooseDoc } from '../support/original-docs.js';
import { type ViewRow, daqdocStats, expectedNewproc0, expectedStatusgood, statusGroups, viewAnswer, viewNames } from '../support/original-views.js';
import { type ServerProcess, meshMain, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';
import { type SlurmCluster, startSlurm } from '../support/slurm.js';

const STEPS = ['proc0', 'proc1', 'proc2'];
const SITE_OF: Record<string, string> = { proc0: 'modane', proc1: 'lyon', proc2: 'kit' };
const password = () => `pw-${randomBytes(12).toString('base64url')}`;
const ADMIN = { user: 'views-admin', password: password() };
/** One account per process, each with its one role. */
const ACCOUNTS = {
  ingest: { user: 'views-ingest', password: password(), role: 'mesh-agent:kit' },
  modane: { user: 'views-modane', password: password(), role: 'mesh-agent:modane' },
  kit: { user: 'views-kit', password: password(), role: 'mesh-agent:kit' },
  lyon: { user: 'views-lyon', password: password(), role: 'mesh-agent:lyon' },
  operator: { user: 'views-operator', password: password(), role: 'mesh-operator' },
  reader: { user: 'views-reader', password: password(), role: 'mesh-reader' },
};
type Account = (typeof ACCOUNTS)[keyof typeof ACCOUNTS];
const envOf = (account: { user: string; password: string }) => ({ MESH_KIT_USER: account.user, MESH_KIT_PASSWORD: account.password });

/** What each file of run lg23b002 goes through, by file number; the statuses they end in at the snapshot. */
const FILE = {
  complete: [0, 1],
  agentRetried: 2,
  proc2Failed: 3,
  proc0Failed: 4,
  operatorRetried: 5,
  bad: 6,
  hanging: 7,
  afterProc1: 8,
  held: 9,
  afterProc0: 10,
  untouched: [11, 12],
};
const FINAL: Record<number, string> = {
  0: 'good',
  1: 'good',
  2: 'good',
  3: 'proc2 failed',
  4: 'proc0 failed',
  5: 'closed',
  6: 'bad',
  7: 'proc2 in progress',
  8: 'good',
  9: 'proc1 queued',
  10: 'good',
  11: 'closed',
  12: 'closed',
};
const fileName = (n: number) => `lg23b002_${String(n).padStart(3, '0')}`;
const id = (n: number) => `run_${fileName(n)}`;
/** The views the table reduces: asked with `reduce=false` for their rows. */
const REDUCED = new Set(['status', 'daqdoc']);

const top = (doc: DaqDocument, step: string) => (Object.hasOwn(doc, step) ? (doc[step] as StepRecord) : undefined);
const passed = (doc: DaqDocument | undefined, steps: string[]) =>
  doc?.status === 'good' && STEPS.every((s) => (top(doc, s)?.ok === true) === steps.includes(s));

describe('_design/proc on the documents of a real run (agents, Slurm, faults, mesh retry)', function () {
  this.timeout(240_000);
  let slurm: SlurmCluster;
  let server: ServerProcess;
  let dir: string;

  before(async () => {
    slurm = await startSlurm();
    server = await startServerProcess({ site: 'kit', env: { MESH_KIT_USER: ADMIN.user, MESH_KIT_PASSWORD: ADMIN.password } });
    const users = new Database({ url: server.url, database: '_users', credentials: ADMIN });
    for (const { user, password: pw, role } of Object.values(ACCOUNTS))
      await users.put({ _id: `org.couchdb.user:${user}`, type: 'user', name: user, roles: [role], password: pw });
    dir = testFolder('mesh-views-run-');
  });
  afterEach(async () => {
    assert.equal(await stopAllMeshProcesses(), 0, 'the test left mesh agents running');
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
  });

  it('every view and both filters answer as the table says, with a document in every status', async () => {
    const started = Date.now();
    const faults = join(dir, 'faults');
    await mkdir(faults, { recursive: true });
    const raw = {
      database: uniqueDatabase('views'),
      doc_type: 'daqdocument',
      sites: {
        kit: { server: server.url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'kit') },
        modane: { server: server.url, reachable: true, long_running: true, credentials_of: 'kit', log_dir: join(dir, 'logs', 'modane') },
        lyon: {
          server: server.url,
          reachable: true,
          long_running: false,
          credentials_of: 'kit',
          log_dir: join(dir, 'logs', 'lyon'),
          batch: { system: 'slurm', options: [] as string[], docs_per_job: 5, mesh: [process.execPath, meshMain] },
        },
      },
      ingest: { site: 'kit', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
      steps: STEPS.map((name) => ({
        name,
        site: SITE_OF[name],
        run: [process.execPath, NOOP, '--doc', '{doc_id}', '--step', '{step}', '--touch', '{out}'],
        out: join(dir, 'out', name, '{run_name}_{file_number}'),
        // Long enough that the hanging proc2 is still running at the snapshot.
        timeout_s: 120,
        max_attempts: 3,
        lease_s: 10,
      })),
      agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 1, retry_cap_s: 2, grace_s: 2 },
    };
    const configFile = join(dir, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const pushed = await runMesh(['--config', configFile, 'couchapp', 'push'], envOf(ADMIN));
    assert.equal(pushed.status, 0, pushed.stderr);
    assert.match(pushed.stdout, /_design\/proc updated/);

    const as = (account: Account) => new Database({ url: server.url, database: raw.database, credentials: account });
    const reader = as(ACCOUNTS.reader);
    const read = async (n: number) => reader.get<DaqDocument>(id(n));
    const until = (what: string, n: number, holds: (doc: DaqDocument | undefined) => boolean, ms = 30_000) =>
      waitFor(`${id(n)}: ${what}`, async () => holds(await read(n)), ms, 100);
    const switchFile = (n: number, kind: 'fail' | 'hang') => join(faults, `${id(n)}.${kind}`);
    async function catalogue(numbers: number[], file = (n: number) => join(dir, 'daq', fileName(n))): Promise<void> {
      const docs = numbers.map((n) => ({
        _id: id(n),
        type: 'daqdocument',
        run_name: 'lg23b002',
        file_number: n,
        file: file(n),
        size_in_bytes: 0,
        date_closed: new Date().toISOString(),
        status: 'closed',
        history: historyTo('closed', [], undefined, 'kit/ingest', ACCOUNTS.ingest.user),
      }));
      assert.deepEqual(
        (await as(ACCOUNTS.ingest).bulk(docs)).filter((r) => r.error),
        [],
        'the ingest account catalogues the files',
      );
    }
    let passes = 0;
    async function lyonPass(): Promise<void> {
      const result = await runMesh(
        ['--config', configFile, 'agent', '--site', 'lyon', '--once', '--name', `lyon-once-${++passes}`],
        { ...slurm.env, ...envOf(ACCOUNTS.lyon) },
        60_000,
      );
      assert.equal(result.status, 0, `lyon pass ${passes}:\n${result.stderr}`);
    }
    const agent = (site: 'modane' | 'kit', concurrency: number): ChildProcess =>
      spawnMeshProcess(['--config', configFile, 'agent', '--site', site, '--name', `${site}-1`, '--concurrency', String(concurrency)], {
        logFile: join(dir, `${site}.log`),
        env: { ...envOf(ACCOUNTS[site]), MESH_FAULT_DIR: faults },
      });

    const modane = agent('modane', 2);
    // One step at a time: while the hanging proc2 holds kit's only slot, a document stays good after proc1.
    const kit = agent('kit', 1);
    let heldJob: string | undefined;
    let hung: RunIdentity | undefined;
    let kitExit: number | null = null;
    try {
      // proc0: the agent retries a failed attempt (the switch goes once it failed); two fail until max_attempts; one is bad.
      for (const n of [FILE.agentRetried, FILE.proc0Failed, FILE.operatorRetried]) await writeFile(switchFile(n, 'fail'), '');
      await catalogue([...FILE.complete, FILE.agentRetried, FILE.proc2Failed, FILE.proc0Failed, FILE.operatorRetried]);
      // A relative file name: the agent refuses it and marks the document bad.
      await catalogue([FILE.bad], (n) => join('daq', fileName(n)));
      await until('a failed first attempt of proc0', FILE.agentRetried, (doc) => doc !== undefined && stepRecord(doc, 'proc0')?.ok === false);
      await rm(switchFile(FILE.agentRetried, 'fail'));
      for (const n of [...FILE.complete, FILE.agentRetried, FILE.proc2Failed]) await until('good after proc0', n, (doc) => passed(doc, ['proc0']));
      for (const n of [FILE.proc0Failed, FILE.operatorRetried]) await until('proc0 failed', n, (doc) => doc?.status === 'proc0 failed');
      await until('bad', FILE.bad, (doc) => doc?.status === 'bad');

      // Slurm, pass 1: one job for four documents (a batch claim); then kit's proc2, which fails on one until max_attempts.
      await writeFile(switchFile(FILE.proc2Failed, 'fail'), '');
      await lyonPass();
      for (const n of [...FILE.complete, FILE.agentRetried]) await until('complete', n, (doc) => passed(doc, STEPS), 90_000);
      await until('proc2 failed', FILE.proc2Failed, (doc) => doc?.status === 'proc2 failed');

      // Pass 2: a proc2 that hangs, holding kit's slot; pass 3: a document good after proc1 behind it.
      await catalogue([FILE.hanging]);
      await until('good after proc0', FILE.hanging, (doc) => passed(doc, ['proc0']));
      await writeFile(switchFile(FILE.hanging, 'hang'), '');
      await lyonPass();
      await catalogue([FILE.afterProc1]);
      await until(
        'proc2 in progress, its run recorded',
        FILE.hanging,
        (doc) => doc?.status === 'proc2 in progress' && stepRecord(doc, 'proc2')?.run !== undefined,
        90_000,
      );
      await until('good after proc0', FILE.afterProc1, (doc) => passed(doc, ['proc0']));
      await lyonPass();
      await catalogue([FILE.held]);
      await until('good after proc1', FILE.afterProc1, (doc) => passed(doc, ['proc0', 'proc1']), 90_000);

      // Pass 4 submits held: the document stays proc1 queued.
      await until('good after proc0', FILE.held, (doc) => passed(doc, ['proc0']));
      raw.sites.lyon.batch.options = ['--hold'];
      await writeFile(configFile, JSON.stringify(raw, null, 2));
      await lyonPass();
      await catalogue([FILE.afterProc0]);
      const queued = await read(FILE.held);
      assert.equal(queued?.status, 'proc1 queued');
      heldJob = stepRecord(queued!, 'proc1')?.batch?.id;
      assert.match(heldJob ?? '', /^\d+$/);
      assert.match(await slurm.scontrol(['show', 'job', '-o', heldJob!]), /JobState=PENDING/);

      // modane stops; then the operator retries a proc0 failed, and files arrive that nothing touches.
      await until('good after proc0', FILE.afterProc0, (doc) => passed(doc, ['proc0']));
      assert.equal(await stopProcess(modane), 0, 'modane agent exit status');
      await rm(switchFile(FILE.operatorRetried, 'fail'));
      const retried = await runMesh(['--config', configFile, 'retry', id(FILE.operatorRetried)], envOf(ACCOUNTS.operator));
      assert.equal(retried.status, 0, retried.stderr);
      await catalogue(FILE.untouched);

      // ---- The snapshot --------------------------------------------------------------------
      const get = async <T>(path: string): Promise<T> => {
        const response = await fetch(`${server.url}/${raw.database}/${path}`, {
          headers: { authorization: `Basic ${Buffer.from(`${ACCOUNTS.reader.user}:${ACCOUNTS.reader.password}`).toString('base64')}` },
        });
        assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
        return (await response.json()) as T;
      };
      const all = (await get<{ rows: Array<{ doc: LooseDoc }> }>('_all_docs?include_docs=true')).rows.map((r) => r.doc);
      const files = all.filter((d) => d._id.startsWith('run_')) as unknown as DaqDocument[];
      const byNumber = new Map(files.map((d) => [d.file_number, d]));
      const doc = (n: number) => byNumber.get(n) as DaqDocument;

      // The run produced what the comparison is meant to cover.
      assert.deepEqual(Object.fromEntries(files.map((d) => [d.file_number, d.status])), FINAL);
      for (const d of files) for (const step of STEPS) if (top(d, step)) assert.equal(top(d, step)?.ok, true, `${d._id}: a top-level ${step} is a success`);
      for (const n of [...FILE.complete, FILE.agentRetried]) assert.ok(passed(doc(n), STEPS), `${id(n)} complete`);
      const agentRetried = top(doc(FILE.agentRetried), 'proc0') as StepRecord;
      assert.ok(
        agentRetried.attempts >= 2 && agentRetried.past_attempts?.some((a) => (a as { exit_code?: number }).exit_code === 4),
        `${id(FILE.agentRetried)}: proc0 succeeded after a failed attempt: ${JSON.stringify(agentRetried)}`,
      );
      assert.ok(passed(doc(FILE.afterProc1), ['proc0', 'proc1']) && passed(doc(FILE.afterProc0), ['proc0']));
      const operatorRetried = doc(FILE.operatorRetried);
      assert.ok(
        !top(operatorRetried, 'proc0') && operatorRetried.pending?.proc0?.attempts === 3 && operatorRetried.pending.proc0.uncounted === 3,
        JSON.stringify(operatorRetried.pending),
      );
      assert.deepEqual(
        operatorRetried.history.slice(-1).map((h) => [h.from, h.to]),
        [['proc0 failed', 'closed']],
      );
      for (const n of FILE.untouched) assert.ok(doc(n).pending === undefined && doc(n).history.length === 1, `${id(n)} untouched`);
      assert.ok(
        STEPS.every((s) => stepRecord(doc(FILE.bad), s) === undefined),
        'the bad document ran nothing',
      );
      // The batch documents: each success names its job, the job is in batchJob; one job ran four documents.
      const jobs = new Map<number | string, number[]>();
      for (const d of files.filter((f) => top(f, 'proc1'))) {
        const record = top(d, 'proc1') as StepRecord;
        assert.equal(typeof record.batchjob, 'number', `${d._id}: proc1.batchjob is the job number`);
        assert.equal(String(record.batchjob), record.batch?.id);
        assert.ok(
          d.batchJob?.some((job) => job.number === record.batchjob && job.type === 'slurm'),
          `${d._id}: batchJob lists job ${record.batchjob}`,
        );
        jobs.set(record.batchjob!, [...(jobs.get(record.batchjob!) ?? []), d.file_number]);
      }
      assert.deepEqual([...jobs.values()].map((numbers) => numbers.length).sort(), [1, 1, 4], `three jobs ran: ${JSON.stringify([...jobs])}`);
      assert.ok(
        doc(FILE.held).batchJob?.some((job) => String(job.number) === heldJob && job.type === 'slurm'),
        'the held job is in batchJob',
      );

      // Every view, as the table computes it from the documents read back.
      const design = await get<{ views: Record<string, unknown> }>('_design/proc');
      assert.deepEqual(Object.keys(design.views).sort(), viewNames(STEPS).sort());
      const empty: string[] = [];
      for (const view of viewNames(STEPS)) {
        const { rows } = await get<{ rows: ViewRow[] }>(`_design/proc/_view/${view}${REDUCED.has(view) ? '?reduce=false' : ''}`);
        const want = viewAnswer(all, STEPS, view);
        assert.deepEqual(
          rows.map((r) => ({ id: r.id, key: r.key, value: r.value })),
          want,
          `view ${view}`,
        );
        if (want.length === 0) empty.push(view);
      }
      assert.deepEqual(empty, ['proc0inprogress', 'proc1inprogress'], 'the views the run leaves empty');
      assert.deepEqual((await get<{ rows: unknown[] }>('_design/proc/_view/status?group_level=1')).rows, statusGroups(all, STEPS));
      assert.deepEqual((await get<{ rows: unknown[] }>('_design/proc/_view/daqdoc')).rows, [{ key: null, value: daqdocStats(all, STEPS) }]);
      for (const [filter, wanted] of [
        ['newproc0', (d: LooseDoc) => expectedNewproc0(d, STEPS)],
        ['statusgood', expectedStatusgood],
      ] as const) {
        const { results } = await get<{ results: Array<{ id: string }> }>(`_changes?filter=proc/${filter}`);
        const want = all
          .filter(wanted)
          .map((d) => d._id)
          .sort();
        assert.deepEqual(results.map((r) => r.id).sort(), want, `filter ${filter}`);
        assert.ok(want.length >= 3, `filter ${filter} selects ${want.join(', ')}`);
      }
      console.log(
        `      ${files.length} documents, ${passes} lyon passes, ${jobs.size + 1} Slurm jobs, snapshot after ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    } finally {
      // Nothing outlives the test: the agents (kit's kills its hanging step on the way), the held job.
      await stopProcess(modane);
      hung = (await read(FILE.hanging).catch(() => undefined))?.pending?.proc2?.run;
      kitExit = await stopProcess(kit);
      if (heldJob) await runScancel(heldJob);
    }
    assert.equal(kitExit, 0, 'kit agent exit status');
    if (hung) await waitFor('the hanging proc2 to be gone', () => !groupAlive(hung!.pgid), 10_000);
  });

  function groupAlive(pgid: number): boolean {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }

  async function runScancel(job: string): Promise<void> {
    const { execFile } = await import('node:child_process');
    await new Promise<void>((resolve, reject) =>
      execFile('scancel', [job], { env: { ...process.env, ...slurm.env } }, (error) => (error ? reject(error) : resolve())),
    );
  }
});
