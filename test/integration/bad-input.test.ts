/**
 * The bad-input corpus (test/corpus/*.json) driven through the real system: documents and file
 * names through a real agent and embedded server, configs through the real `mesh` command,
 * garbage HTTP answers through test/support/garbage-server.ts in front of a real server. Every
 * test also runs good control documents, so that "nothing ran" cannot pass by accident.
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { type DaqDocument, isDone } from '../../core/document.js';
import { type ConfigEntry, type DocumentEntry, type NameEntry, STACK_TRACE, brokenConfig, documentBody, hostileName, readCorpus } from '../support/corpus.js';
import { type Rule, startGarbageServer } from '../support/garbage-server.js';
import { type ServerProcess } from '../support/server-process.js';
import { type TestMesh, makeMesh, runMesh, seedDocuments, serverForSuite, spawnMeshProcess, startAgent, stopProcess, waitFor } from '../support/mesh.js';
import { historyTo } from '../../core/provenance.js';
import { failureLine, exitCodeFor } from '../../cli/exit.js';
import { siteOf } from '../../cli/context.js';
import { credentialsFor } from '../../config/credentials.js';
import { loadMeshConfig } from '../../config/load.js';

type Json = Record<string, unknown>;

async function readText(file: string): Promise<string> {
  return existsSync(file) ? readFile(file, 'utf8') : '';
}

/** `<doc> <step>` lines of the noop step program's log, as [doc, step] pairs. */
async function runsOf(mesh: TestMesh): Promise<Array<[string, string]>> {
  const lines = (await readText(mesh.runLog)).split('\n').filter(Boolean);
  return lines.map((l) => [l.replace(/ proc\d+$/, ''), l.slice(l.lastIndexOf(' ') + 1)]);
}

/** Runs `items` through `fn`, at most `width` at a time. */
async function inBatches<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

async function exitWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  const timer = new Promise<false>((r) => setTimeout(() => r(false), ms).unref());
  return Promise.race([once(child, 'exit').then(() => true), timer]);
}

describe('bad input (the corpus in test/corpus)', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('malformed documents: skipped with one logged reason, marked bad, refused by the server, or processed like any other; nothing else runs', async () => {
    const corpus = readCorpus<DocumentEntry, { bases: Record<string, Json> }>('documents.json');
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'], push: false });
    const dir = join(mesh.dir, 'daq');
    await mkdir(dir, { recursive: true });
    const idOf = (e: DocumentEntry) => (typeof e.set?._id === 'string' ? e.set._id : `corpus_${e.id}`);
    const stored = new Map<string, string>();
    const refusals = new Map<string, string>();
    // Written before the design document exists: documents from before the validation.
    for (const entry of corpus.entries) {
      const res = await fetch(`${server.url}/${mesh.config.database}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: documentBody(entry, corpus.bases, { dir }),
      });
      const answer = (await res.json()) as { rev?: string; error?: string; reason?: string };
      if (res.ok && answer.rev) stored.set(entry.id, answer.rev);
      else refusals.set(entry.id, `${res.status} ${answer.error} ${answer.reason}`);
    }
    await pushDesign(mesh.db, designDocument(mesh.config));
    const controls = await seedDocuments(mesh, 2);
    const byExpect = (kind: DocumentEntry['expect']) => corpus.entries.filter((e) => e.expect === kind);
    for (const entry of byExpect('refused')) assert.match(refusals.get(entry.id) ?? 'stored', new RegExp(entry.reason ?? '.'), `${entry.id}: ${entry.what}`);
    for (const entry of corpus.entries.filter((e) => e.expect !== 'refused')) assert.ok(stored.has(entry.id), `${entry.id} stored (${refusals.get(entry.id)})`);

    const agent = startAgent(mesh, 'picky', ['--concurrency', '4']);
    const complete = (doc: DaqDocument | undefined) => doc?.status === 'good' && isDone(doc, 'proc1');
    const markedBad = (doc: DaqDocument | undefined) => doc?.status === 'bad';
    const awaited = [
      ...[...controls, ...byExpect('runs').map(idOf)].map((id) => ({ id, final: complete })),
      ...byExpect('bad').map((e) => ({ id: idOf(e), final: markedBad })),
    ];
    // Each poll reads only the documents not yet final (some are megabytes), and a "runs"
    // document only once its proc1 has run; the pass after the wait reads every one again.
    const final = new Set<string>();
    const stillPending = async () => {
      const proc1Ran = new Set((await runsOf(mesh)).filter(([, step]) => step === 'proc1').map(([doc]) => doc));
      for (const { id, final: isFinal } of awaited) {
        if (final.has(id) || (isFinal === complete && !proc1Ran.has(id))) continue;
        if (isFinal(await mesh.db.get<DaqDocument>(id))) final.add(id);
      }
      return awaited.filter(({ id }) => !final.has(id)).map(({ id }) => id);
    };
    // Throwing names the documents waited for in waitFor's timeout message.
    await waitFor(
      'controls and "runs" entries complete, "bad" entries marked',
      async () => {
        const pending = await stillPending();
        if (pending.length > 0) throw new Error(`not final yet: ${pending.slice(0, 10).join(', ')}`);
        return true;
      },
      150_000,
      250,
    );
    for (const { id, final: isFinal } of awaited) assert.ok(isFinal(await mesh.db.get<DaqDocument>(id)), `${id} final, read again`);
    await new Promise((r) => setTimeout(r, 2500)); // two more sweeps: a skip must not repeat
    assert.equal(await stopProcess(agent), 0);

    const log = await readText(join(mesh.dir, 'picky.log'));
    assert.doesNotMatch(log, STACK_TRACE);
    const skipLines = log.split('\n').filter((l) => l.includes('skipped:'));
    const runs = await runsOf(mesh);
    const ran = (id: string) =>
      runs
        .filter(([doc]) => doc === id)
        .map(([, step]) => step)
        .sort();
    for (const id of controls) assert.deepEqual(ran(id), ['proc0', 'proc1'], `control ${id} ran each step once`);
    const failures: string[] = [];
    for (const entry of corpus.entries.filter((e) => e.expect !== 'refused')) {
      const id = idOf(entry);
      const doc = await mesh.db.get<DaqDocument>(id);
      const skips = skipLines.filter((l) => l.includes(`"doc":${JSON.stringify(id)}`));
      const steps = ran(id).join(',');
      const note = String(Array.isArray(doc?.history) ? doc.history.at(-1)?.note : undefined);
      const problem =
        skips.length > 1
          ? `skipped ${skips.length} times`
          : entry.expect === 'runs'
            ? steps === 'proc0,proc1'
              ? undefined
              : `ran [${steps}], expected each step once`
            : steps !== ''
              ? `ran [${steps}]`
              : entry.expect === 'skipped' && !new RegExp(`skipped: .*${entry.reason}`, 's').test(skips[0] ?? '')
                ? `no skip line matching /${entry.reason}/: ${skips[0] ?? 'none'}`
                : entry.expect === 'bad' && (doc?.status !== 'bad' || !new RegExp(`refused: .*${entry.reason}`, 's').test(note))
                  ? `status ${doc?.status}, note ${note.slice(0, 200)}`
                  : entry.expect !== 'bad' && doc?._rev !== stored.get(entry.id)
                    ? `written (status ${doc?.status}), expected untouched`
                    : undefined;
      if (problem) failures.push(`${entry.id} (${entry.what}), expected ${entry.expect}: ${problem}`);
    }
    assert.deepEqual(failures, []);
    // Every run the step program saw is a control or a "runs" entry.
    const allowed = new Set([...controls, ...byExpect('runs').map(idOf)]);
    assert.deepEqual(
      runs.filter(([doc]) => !allowed.has(doc)),
      [],
    );
    // The server kept serving after what it refused.
    assert.equal((await fetch(`${server.url}/_up`)).status, 200);
  });

  it('hostile file names: passed literally as one argument, or the document marked bad; never executed', async () => {
    const corpus = readCorpus<NameEntry>('hostile-names.json');
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8')) as { steps: Array<{ run: string[] }> };
    raw.steps[0].run = [process.execPath, raw.steps[0].run[1], '--log', mesh.runLog, '--doc', '{file}', '--step', '{step}', '--touch', '{out}'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const vars = { dir: join(mesh.dir, 'daq'), root: mesh.dir };
    const base = {
      type: 'daqdocument',
      run_name: 'lg23b002',
      size_in_bytes: 0,
      date_closed: new Date().toISOString(),
      status: 'closed',
      history: historyTo('closed', []),
    };
    const files = corpus.entries.map((e) => hostileName(e, vars));
    await mesh.db.bulk(files.map((file, i) => ({ ...base, _id: `hostile_${i}`, file_number: i, file })));
    const [control] = await seedDocuments(mesh, 1);
    const agent = startAgent(mesh, 'careful');
    const expected = (i: number) => (corpus.entries[i].expect === 'literal' ? 'good' : 'bad');
    await waitFor(
      'every hostile document handled',
      async () => {
        const { rows } = await mesh.db.allDocs<DaqDocument>({ include_docs: true });
        const status = new Map(rows.map((r) => [r.id, r.doc?.status]));
        return status.get(control) === 'good' && files.every((_, i) => status.get(`hostile_${i}`) === expected(i));
      },
      60_000,
      250,
    );
    assert.equal(await stopProcess(agent), 0);
    const logged = (await runsOf(mesh)).map(([file]) => file);
    const literal = files.filter((_, i) => corpus.entries[i].expect === 'literal');
    const controlFile = join(vars.dir, 'lg23b002_000');
    assert.deepEqual(logged.sort(), [...literal, controlFile].sort(), 'each literal name reached the program once, as one argument; nothing else ran');
    for (let i = 1; i <= 6; i++) assert.ok(!existsSync(join(mesh.dir, `pwned${i}`)), `pwned${i}: nothing was executed`);
    for (const [i, entry] of corpus.entries.entries()) {
      const doc = await mesh.db.get<DaqDocument>(`hostile_${i}`);
      if (entry.expect === 'bad') assert.match(String(doc?.history.at(-1)?.note), new RegExp(`refused: .*file .*${entry.reason}`, 's'), entry.what);
      // Outputs come from the config's template, whatever the input's name.
      else assert.equal((doc?.proc0 as { file?: string }).file, join(mesh.dir, 'out', 'proc0', `lg23b002_${String(i).padStart(3, '0')}`), entry.what);
    }
  });

  describe('invalid configs and site profiles: exit 2 naming the key, the value and the expected form; nothing started', () => {
    const corpus = readCorpus<ConfigEntry>('configs.json');
    /** What makes a failure line wrong, in words; undefined when it is right. */
    const wrongLine = (entry: ConfigEntry, status: number | null, line: string): string | undefined => {
      const why = `${entry.name} (${entry.what}): status ${status}\n${line}`;
      if (status !== 2) return `${why}\n  expected status 2`;
      if (!new RegExp(entry.expect).test(line)) return `${why}\n  expected /${entry.expect}/`;
      if (STACK_TRACE.test(line) || /secret|hunter2/.test(line)) return `${why}\n  a stack trace or a secret`;
      return undefined;
    };
    /** Writes the entry's broken config (and site profile) into a folder of its own; returns the config file. */
    async function writeBroken(mesh: TestMesh, valid: Json, entry: ConfigEntry): Promise<string> {
      const dir = await mkdtemp(join(mesh.dir, `config-${entry.name}-`));
      const { config, profile } = brokenConfig(entry, valid);
      const file = join(dir, 'mesh.json');
      await writeFile(file, config);
      if (profile !== undefined) await writeFile(join(dir, 'alpha.json'), profile);
      return file;
    }
    /**
     * In process, what `mesh agent --site alpha --once` does with its config before it starts
     * anything (cli/commands/agent.ts: load, --site, the site's steps, its credentials), and the
     * status and line `mesh` would exit with (cli/exit.ts).
     */
    function agentConfigVerdict(file: string): { status: number | null; line: string } {
      try {
        const config = loadMeshConfig(file);
        const site = siteOf(config, 'alpha');
        assert.ok(
          config.steps.some((s) => s.site === site.name),
          "the corpus keeps alpha's steps",
        );
        credentialsFor(site.credentials_of);
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        return { status: exitCodeFor(error), line: failureLine(error) };
      }
      return { status: 0, line: 'the config was accepted' };
    }
    /** Entries that only the command line can show (arguments, other commands), and two of the config file's: real `mesh` processes. */
    const THROUGH_MESH = new Set(['not_json', 'profile_unknown_key']);
    const throughMesh = corpus.entries.filter((e) => e.args !== undefined || THROUGH_MESH.has(e.name));

    it('every config entry, loaded in process as the agent command loads it, is refused with its reason', async () => {
      const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'], push: false });
      const valid = JSON.parse(await readFile(mesh.configFile, 'utf8')) as Json;
      assert.equal(agentConfigVerdict(mesh.configFile).status, 0, 'the valid config passes the same checks');
      const entries = corpus.entries.filter((e) => e.args === undefined);
      assert.ok(entries.length > 80, `only ${entries.length} config entries`);
      const failures: string[] = [];
      for (const entry of entries) {
        const { status, line } = agentConfigVerdict(await writeBroken(mesh, valid, entry));
        const wrong = wrongLine(entry, status, line);
        if (wrong) failures.push(wrong);
      }
      assert.deepEqual(failures, []);
    });

    it(`${throughMesh.length} entries through the real mesh command: exit 2 with the reason on stderr, no step run, no agent started`, async () => {
      const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
      const [control] = await seedDocuments(mesh, 1);
      const valid = JSON.parse(await readFile(mesh.configFile, 'utf8')) as Json;
      assert.deepEqual(
        throughMesh
          .filter((e) => THROUGH_MESH.has(e.name))
          .map((e) => e.name)
          .sort(),
        [...THROUGH_MESH].sort(),
        'the chosen entries are in the corpus',
      );
      const failures: string[] = [];
      await inBatches(throughMesh, 6, async (entry) => {
        const result = await runMesh(['--config', await writeBroken(mesh, valid, entry), ...(entry.args ?? ['agent', '--site', 'alpha', '--once'])]);
        const wrong = wrongLine(entry, result.status, result.stderr);
        if (wrong) failures.push(wrong);
      });
      assert.deepEqual(failures, []);
      assert.equal(await readText(mesh.runLog), '', 'no step ran');
      assert.deepEqual((await mesh.db.allDocs({ startkey: 'mesh-agent:', endkey: 'mesh-agent:\ufff0' })).rows, [], 'no agent started');
      // The control: the same command with the valid config runs the control document.
      const ok = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--once'], {}, 60_000);
      assert.equal(ok.status, 0, ok.stderr);
      assert.deepEqual((await runsOf(mesh)).filter(([doc]) => doc === control).length, 2);
    });
  });

  describe('garbage HTTP answers: a clear error or a retry with backoff and a logged reason; no crash, no hang, no step run', () => {
    interface HttpEntry {
      name: string;
      what: string;
      scope: 'whole' | 'status' | 'agent' | 'agent-no-run' | 'once-recovers';
      rules: Rule[];
      expect: string;
      server_timeout_s?: number;
      server_max_answer_mib?: number;
    }
    const corpus = readCorpus<HttpEntry>('http-answers.json');
    /** How long a command may take to show its reason; generous: the machine may be loaded. */
    const BOUND_MS = 30_000;

    /** A mesh on the real server with one control document, and a config that talks to `url` instead. */
    async function meshBehind(
      url: string,
      options: { timeout_s?: number; max_answer_mib?: number; seed?: boolean } = {},
    ): Promise<{ mesh: TestMesh; control: string; configFile: string }> {
      const mesh = await makeMesh(server.url, { steps: ['proc0'] });
      const control = options.seed === false ? 'run_lg23b002_0000' : (await seedDocuments(mesh, 1))[0];
      const raw = JSON.parse(await readFile(mesh.configFile, 'utf8')) as Json & { sites: { alpha: Json } };
      raw.sites.alpha.server = url;
      raw.server_timeout_s = options.timeout_s ?? 10;
      if (options.max_answer_mib !== undefined) raw.server_max_answer_mib = options.max_answer_mib;
      // A claim stuck retrying against garbage is given up 5 s after the grace period on SIGTERM.
      (raw.agent as Json).grace_s = 1;
      const configFile = join(mesh.dir, 'garbage.json');
      await writeFile(configFile, JSON.stringify(raw));
      return { mesh, control, configFile };
    }

    /**
     * Starts `mesh ARGS` and lets it run until it exits or its log matches `reason` (at most
     * `boundMs`), then SIGTERM: it must be gone 12 s later.
     */
    async function runBounded(
      args: string[],
      logFile: string,
      reason: RegExp,
      boundMs: number,
    ): Promise<{ code: number | null; stoppedByUs: boolean; output: string }> {
      const child = spawnMeshProcess(args, { logFile });
      const deadline = Date.now() + boundMs;
      const ended = () => child.exitCode !== null || child.signalCode !== null;
      while (Date.now() < deadline && !ended() && !reason.test(await readText(logFile))) await new Promise((r) => setTimeout(r, 250));
      const exited = await exitWithin(child, 0);
      if (!exited) {
        child.kill('SIGTERM');
        assert.ok(await exitWithin(child, 12_000), `mesh ${args.slice(2).join(' ')} still running 12 s after SIGTERM`);
      }
      return { code: child.exitCode, stoppedByUs: !exited, output: await readText(logFile) };
    }

    /** Every command against a server that answers only garbage; what went wrong, in words. */
    async function checkWhole(entry: HttpEntry): Promise<string[]> {
      const failures: string[] = [];
      const check = (ok: boolean, what: string) => void (ok || failures.push(`${entry.name}: ${what}`));
      const garbage = await startGarbageServer(entry.rules);
      try {
        const { mesh, control, configFile } = await meshBehind(garbage.url, { timeout_s: entry.server_timeout_s, max_answer_mib: entry.server_max_answer_mib });
        const config = ['--config', configFile];
        const whole = entry.scope === 'whole';
        const expect = new RegExp(entry.expect);
        const started = Date.now();
        const [status, coordinator, once, longRunning] = await Promise.all([
          runMesh([...config, 'status', '--json'], {}, 60_000),
          whole ? runMesh([...config, 'coordinator', '--once'], {}, 60_000) : undefined,
          whole ? runBounded([...config, 'agent', '--site', 'alpha', '--once', '--name', 'once'], join(mesh.dir, 'once.log'), expect, BOUND_MS) : undefined,
          whole ? runBounded([...config, 'agent', '--site', 'alpha', '--name', 'long'], join(mesh.dir, 'long.log'), expect, BOUND_MS) : undefined,
        ]);
        const seconds = (Date.now() - started) / 1000;

        let error = '';
        let answered = false;
        try {
          const { databases } = JSON.parse(status.stdout) as { databases: Array<{ error?: string; reachable: boolean }> };
          error = String(databases[0].error);
          answered = databases.some((db) => db.reachable);
        } catch {
          error = `(no JSON: ${status.stdout.slice(0, 200)})`;
        }
        // Exit 3 when the server could not be read, 0 when it answered.
        check(
          status.status === (answered ? 0 : 3) && !STACK_TRACE.test(status.stderr),
          `mesh status --json exited ${status.status} (a server answered: ${answered}): ${status.stderr}`,
        );
        check(expect.test(error), `mesh status --json: error "${error}" does not match /${entry.expect}/`);
        if (coordinator) {
          check(
            coordinator.status === 0 && !STACK_TRACE.test(coordinator.stderr),
            `mesh coordinator --once exited ${coordinator.status}: ${coordinator.stderr}`,
          );
          check(
            /skipped this round/.test(coordinator.stderr) && expect.test(coordinator.stderr),
            `mesh coordinator --once logs no reason matching /${entry.expect}/: ${coordinator.stderr}`,
          );
        }
        for (const [name, agent] of [
          ['agent --once', once],
          ['agent', longRunning],
        ] as const) {
          if (!agent) continue;
          const what = `mesh ${name} (exit ${agent.code}, ${agent.stoppedByUs ? 'stopped by SIGTERM' : 'ended by itself'})`;
          check(
            !STACK_TRACE.test(agent.output) && expect.test(agent.output),
            `${what}: a stack trace or no reason matching /${entry.expect}/:\n${agent.output}`,
          );
          // Either ended by itself with a one-line error (1 at run time, 2 when the server called
          // the request bad: a 4xx), or still retrying when stopped (0, or 1 for a request cut short).
          const ownError = new RegExp(`^mesh: .*${entry.expect}`, 'm').test(agent.output);
          if (ownError) check(agent.code === 1 || agent.code === 2, what);
          else check(agent.stoppedByUs && (agent.code === 0 || agent.code === 1), `${what}: neither retrying nor a one-line error:\n${agent.output}`);
        }
        // Backoff, not a tight loop: a few requests per second for the four commands together.
        check(garbage.requests.length < 40 * seconds + 40, `${garbage.requests.length} requests in ${seconds} s`);
        check((await readText(mesh.runLog)) === '', 'a step ran');
        check((await mesh.db.get<DaqDocument>(control))?.status === 'closed', 'the control document was touched');
      } finally {
        await garbage.stop();
      }
      return failures;
    }

    it(`every request answered with garbage: status --json, coordinator --once, agent --once and a long-running agent (${corpus.entries
      .filter((e) => e.scope === 'whole' || e.scope === 'status')
      .map((e) => e.name)
      .join(', ')})`, async () => {
      const failures: string[] = [];
      // Several servers at once: each entry's commands mostly wait for a timeout or a backoff.
      await inBatches(
        corpus.entries.filter((e) => e.scope === 'whole' || e.scope === 'status'),
        5,
        async (entry) => void failures.push(...(await checkWhole(entry))),
      );
      assert.deepEqual(failures, []);
    });

    for (const entry of corpus.entries.filter((e) => e.scope === 'agent' || e.scope === 'agent-no-run')) {
      it(`${entry.name}: ${entry.what}`, async () => {
        const garbage = await startGarbageServer(entry.rules, server.url);
        try {
          // The control document arrives once the agent follows the feed, so that a broken view
          // cannot hide it: the feed alone must bring it.
          const { mesh, control, configFile } = await meshBehind(garbage.url, { seed: false });
          const logFile = join(mesh.dir, 'long.log');
          const agent = spawnMeshProcess(['--config', configFile, 'agent', '--site', 'alpha', '--name', 'long'], { logFile });
          try {
            await waitFor('the agent following the changes feed', () => garbage.requests.some((r) => r.includes('/_changes')), 20_000);
            await seedDocuments(mesh, 1);
            if (entry.scope === 'agent')
              await waitFor('the control document processed', async () => (await mesh.db.get<DaqDocument>(control))?.status === 'good', 30_000, 200);
            else await new Promise((r) => setTimeout(r, 5000));
            if (entry.expect)
              await waitFor(`the log names the reason /${entry.expect}/`, async () => new RegExp(entry.expect).test(await readText(logFile)), 10_000);
            assert.equal(agent.exitCode, null, `the agent is still running:\n${await readText(logFile)}`);
          } finally {
            assert.equal(await stopProcess(agent), 0, await readText(logFile));
          }
          assert.doesNotMatch(await readText(logFile), STACK_TRACE);
          const runs = await runsOf(mesh);
          assert.deepEqual(runs, entry.scope === 'agent' ? [[control, 'proc0']] : [], 'only the control document ran, once');
          if (entry.scope === 'agent-no-run') assert.equal((await mesh.db.get<DaqDocument>(control))?.status, 'closed', 'the control document was not claimed');
        } finally {
          await garbage.stop();
        }
      });
    }

    for (const entry of corpus.entries.filter((e) => e.scope === 'once-recovers')) {
      it(`${entry.name}: ${entry.what}`, async () => {
        const garbage = await startGarbageServer(entry.rules, server.url);
        try {
          const { mesh, control, configFile } = await meshBehind(garbage.url);
          const result = await runMesh(['--config', configFile, 'agent', '--site', 'alpha', '--once'], { MESH_LOG_LEVEL: 'info' }, 60_000);
          assert.equal(result.status, 0, result.stderr);
          assert.match(result.stderr, new RegExp(entry.expect));
          assert.doesNotMatch(result.stderr, STACK_TRACE);
          assert.deepEqual(await runsOf(mesh), [[control, 'proc0']]);
        } finally {
          await garbage.stop();
        }
      });
    }
  });

  it('a raw client writing an illegal transition gets 403', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const [id] = await seedDocuments(mesh, 1);
    const doc = (await mesh.db.get<DaqDocument>(id)) as DaqDocument;
    await assert.rejects(mesh.db.put({ ...doc, status: 'good' }), (e: { statusCode?: number }) => e.statusCode === 403);
    await assert.rejects(mesh.db.put({ ...doc, status: 'proc1 in progress' }), (e: { statusCode?: number }) => e.statusCode === 403);
    await assert.rejects(mesh.db.put({ ...doc, status: 'finished' }), (e: { statusCode?: number }) => e.statusCode === 403);
  });
});
