/**
 * One run per claim: `kill -9` of an agent in the middle of a step must not leave the step's
 * processes running while a second agent reclaims and runs the step again. Real embedded server
 * over HTTP, a real agent process for the agent that is killed (the real Agent in this process
 * for the one taking over, on the same host), a step program (test/support/forking-step.ts)
 * that logs its timeline so that overlaps are seen, not assumed.
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type DaqDocument, type RunIdentity, type StepRecord, stepRecord } from '../../core/document.js';
import type { TimelineLine } from '../support/forking-step.js';
import pino from 'pino';
import { Agent } from '../../agents/agent.js';
import type { AgentContext } from '../../agents/context.js';
import { parseMeshConfig } from '../../config/load.js';
import { Database } from '../../store/database.js';
import { type TestMesh, makeMesh, seedDocuments, serverForSuite, startAgent, stopProcess, waitFor } from '../support/mesh.js';
import { type ServerProcess, repoRoot } from '../support/server-process.js';

const FORKING_STEP = join(repoRoot, 'dist', 'test', 'support', 'forking-step.js');
/** Long enough that an orphaned first run is still working when the second one starts (lease 3 s): it costs no wait, as the first run is killed. */
const STEP_MS = 12_000;
/**
 * The lease of the kill tests: the second agent waits for it to expire. A third of it (the first
 * renewal, which carries the run's identity into the claim) is well inside the 2 s the first run works.
 */
const LEASE_S = 3;
/** How long a later run of the step works: more than a third of the lease, so that a renewal records it in the document. */
const AGAIN_MS = 2000;

interface Run {
  key: string;
  /** The step process and the worker (the step itself, or its child with --fork): pid → /proc start time. */
  processes: Map<number, number>;
  pgid: number;
  start: number;
  /** The last sign of life: a killed run ended at or after it. */
  last: number;
  completed: boolean;
}

async function timeline(path: string): Promise<TimelineLine[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as TimelineLine);
}

/** The runs in a timeline, per (doc, step). */
function runsOf(lines: readonly TimelineLine[]): Map<string, Run[]> {
  const runs = new Map<number, Run & { doc: string; step: string }>();
  for (const line of lines) {
    const run = runs.get(line.run) ?? {
      key: `${line.doc} ${line.step}`,
      doc: line.doc,
      step: line.step,
      processes: new Map(),
      pgid: line.pgid,
      start: line.at,
      last: line.at,
      completed: false,
    };
    run.processes.set(line.pid, line.start_time);
    if (line.role === 'step' && line.event === 'start') run.pgid = line.pgid;
    run.start = Math.min(run.start, line.at);
    run.last = Math.max(run.last, line.at);
    if (line.event === 'end') run.completed = true;
    runs.set(line.run, run);
  }
  const byKey = new Map<string, Run[]>();
  for (const run of runs.values()) byKey.set(run.key, [...(byKey.get(run.key) ?? []), run]);
  return byKey;
}

/** Pairs of runs of one (doc, step) whose known lifetimes intersect. */
function overlaps(runs: readonly Run[]): string[] {
  const sorted = [...runs].sort((a, b) => a.start - b.start);
  const found: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      if (sorted[j].start <= sorted[i].last)
        found.push(
          `run started ${new Date(sorted[i].start).toISOString()} was alive at ${new Date(sorted[i].last).toISOString()}, after the next started at ${new Date(sorted[j].start).toISOString()}`,
        );
    }
  }
  return found;
}

function procStat(pid: number | string): { state: string; ppid: number; pgid: number; startTime: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], ppid: Number(fields[1]), pgid: Number(fields[2]), startTime: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** What still runs of a run: its processes (same pid and start time, not zombies) and any member of its group. */
async function remaining(run: Run): Promise<number[]> {
  const left = new Set<number>();
  for (const [pid, start] of run.processes) {
    const stat = procStat(pid);
    if (stat && stat.state !== 'Z' && stat.startTime === start) left.add(pid);
  }
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat && stat.state !== 'Z' && stat.pgid === run.pgid) left.add(Number(entry));
  }
  return [...left];
}

/** The agent's step supervisor: its child running supervisor-main.js. */
async function supervisorOf(agent: ChildProcess): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || procStat(entry)?.ppid !== agent.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('supervisor-main.js')) return Number(entry);
  }
  return undefined;
}

/** The host-local record of attempt `attempt` (agents/run-identity.ts): the log folder of a plain id is the id. */
function recordPath(mesh: TestMesh, id: string, attempt: number): string {
  return join(mesh.dir, 'logs', id, `proc0.${attempt}.run`);
}

async function localRecord(mesh: TestMesh, id: string, attempt: number): Promise<{ doc: string; step: string; attempt: number; run: RunIdentity } | undefined> {
  return readFile(recordPath(mesh, id, attempt), 'utf8').then(
    (text) => JSON.parse(text),
    () => undefined,
  );
}

/**
 * A one-step mesh whose step is the forking step program, with `count` documents: the step
 * forks for every document (`fork: 'all'`), for none, or for the second one only ('second').
 */
async function oneStepMesh(
  server: ServerProcess,
  options: { fork: 'none' | 'all' | 'second'; count?: number; leaseS?: number; stepMs?: number },
): Promise<{ mesh: TestMesh; log: string; ids: string[] }> {
  const mesh = await makeMesh(server.url, { steps: ['proc0'], lease_s: options.leaseS ?? LEASE_S });
  const log = join(mesh.dir, 'timeline.jsonl');
  const ids = await seedDocuments(mesh, options.count ?? 1);
  const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
  raw.steps[0].run = [
    process.execPath,
    FORKING_STEP,
    '--log',
    log,
    '--doc',
    '{doc_id}',
    '--step',
    '{step}',
    '--sleep',
    String(options.stepMs ?? STEP_MS),
    '--sleep-again',
    String(AGAIN_MS),
    '--touch',
    '{out}',
    ...(options.fork === 'all' ? ['--fork'] : options.fork === 'second' ? ['--fork-doc', ids[1]] : []),
  ];
  raw.steps[0].timeout_s = 60;
  await writeFile(mesh.configFile, JSON.stringify(raw));
  mesh.config = parseMeshConfig(raw, mesh.configFile);
  return { mesh, log, ids };
}

/**
 * The agent that takes over, in this process: the real Agent on this host, its steps run
 * through its own step supervisor. Its process is no part of what these tests prove (the first
 * agent's is), so it costs no CLI start. Its log goes to `<name>.log` as a CLI agent's would.
 */
function takeOver(mesh: TestMesh, name: string, concurrency: number): { stop(): Promise<void> } {
  const logger = pino({ level: 'info' }, pino.destination({ dest: join(mesh.dir, `${name}.log`), sync: true }));
  const ctx: AgentContext = {
    config: mesh.config,
    site: mesh.config.sites.alpha,
    name,
    host: hostname(),
    db: new Database({ url: mesh.config.sites.alpha.server, database: mesh.config.database }),
    logger,
    steps: mesh.config.steps,
    now: () => new Date(),
  };
  const agent = new Agent(ctx, { concurrency, once: false });
  const running = agent.run();
  return {
    stop: async () => {
      await agent.stop();
      await running;
      assert.equal(agent.state, 'stopped');
    },
  };
}

describe('one run per claim: a step process never outlives its agent (real server, real agents)', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  // Two documents side by side in one agent: the step of the first does its work itself, the
  // step of the second in a grandchild. Every claim is checked per document.
  it('kill -9 of the agent 2 s into two steps, one whose work runs in a grandchild: each step dies within 1 s, each reclaimed step runs once, no two runs overlap', async () => {
    const { mesh, log, ids } = await oneStepMesh(server, { fork: 'second', count: 2 });
    const first = startAgent(mesh, 'first', ['--concurrency', '2']);
    const started = await waitFor(
      'both steps working for 2 s',
      async () => {
        const lines = await timeline(log);
        const starts = ids.map((id) => lines.find((l) => l.event === 'start' && l.role === 'step' && l.doc === id));
        return starts.every((start) => start && lines.some((l) => l.event === 'alive' && l.doc === start.doc && l.at >= start.at + 2000))
          ? (starts as TimelineLine[])
          : undefined;
      },
      30_000,
      50,
    );
    const claimed = await Promise.all(ids.map((id) => mesh.db.get<DaqDocument>(id)));
    const recorded = await Promise.all(ids.map((id) => localRecord(mesh, id, 1)));
    const killedAt = Date.now();
    await stopProcess(first, 'SIGKILL');
    const byKey = runsOf(await timeline(log));
    const firstRuns = ids.map((id) => (byKey.get(`${id} proc0`) ?? [])[0]);
    assert.equal(firstRuns[1].processes.size, 2, 'the second document’s step worked in a grandchild');
    assert.equal(firstRuns[0].processes.size, 1, 'the first document’s step worked itself');
    await waitFor(
      'no process of the first runs left',
      async () => (await Promise.all(firstRuns.map(remaining))).every((left) => left.length === 0),
      5000,
      20,
    ).catch(() => undefined);
    const leftAfter = await Promise.all(firstRuns.map(remaining));
    const goneWithin = Date.now() - killedAt;
    for (const [i, left] of leftAfter.entries())
      assert.deepEqual(left, [], `processes of the killed agent's step of ${ids[i]} still run ${goneWithin} ms after the kill`);
    assert.ok(goneWithin <= 1000, `the steps' processes took ${goneWithin} ms to die (limit 1 s)`);

    const second = takeOver(mesh, 'second', 2);
    const done = await waitFor(
      'both steps done',
      async () => {
        const docs = await Promise.all(ids.map((id) => mesh.db.get<DaqDocument>(id)));
        return docs.every((doc) => doc?.status === 'good') ? (docs as DaqDocument[]) : undefined;
      },
      90_000,
      200,
    );
    await second.stop();

    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const lines = await timeline(log);
    for (const [i, id] of ids.entries()) {
      const runs = runsOf(lines).get(`${id} proc0`) ?? [];
      assert.equal(runs.length, 2, `${id}: the killed run and the reclaimed one`);
      assert.equal(runs.filter((r) => r.completed).length, 1, `${id}: exactly one completed run (completed: ${runs.filter((r) => r.completed).length})`);
      assert.deepEqual(overlaps(runs), [], `${id}: no two runs of one (doc, step) overlap`);
      assert.equal(runs.find((r) => r.start === started[i].at)?.completed, false, `${id}: the killed run never completed`);
      const reclaimedAt = Math.max(...runs.map((r) => r.start));
      assert.ok(reclaimedAt < started[i].at + STEP_MS, `${id}: the second run started while the first would still have worked (else no overlap could be seen)`);

      // This host recorded the first run at its spawn (the claim names it too once the first renewal,
      // a third of the lease in, has been written); the record names the second (a new claim carries no earlier run).
      const firstIdentity = { host: hostname(), pid: started[i].pid, pgid: started[i].pid, start_time: started[i].start_time, boot_id: boot };
      assert.deepEqual(recorded[i], { doc: id, step: 'proc0', attempt: 1, run: firstIdentity }, `${id}: the host-local record of the first run`);
      const inClaim = (stepRecord(claimed[i] as DaqDocument, 'proc0') as StepRecord).run;
      if (inClaim) assert.deepEqual(inClaim, firstIdentity);
      assert.deepEqual(
        (await readdir(join(mesh.dir, 'logs', id))).filter((f) => f.endsWith('.run')),
        [],
        `${id}: no run record left once the step is done`,
      );
      assert.equal(started[i].pgid, started[i].pid, `${id}: the step leads its own process group`);
      const secondRun = runs.find((r) => r.completed) as Run;
      const record = stepRecord(done[i], 'proc0') as StepRecord;
      assert.equal(record.ok, true);
      assert.equal(record.attempts, 2);
      assert.equal(record.run?.pgid, secondRun.pgid);
      assert.notEqual(record.run?.pid, firstIdentity.pid);
      assert.equal(done[i].history?.filter((h) => h.to === 'proc0 in progress').length, 2);
    }
  });

  // Where the earlier run's identity is when its agent and supervisor die: in the claim (the step
  // outlived its first renewal, a third of a 3 s lease), or only in this host's record (killed
  // before the first renewal of a 12 s lease: no write has carried it into the document; the
  // step lasts 24 s, so that the orphaned worker still works when the claim is taken over).
  for (const where of ['document', 'host'] as const) {
    it(`an agent taking over on the same host kills what the earlier run left (its supervisor killed too, its identity ${where === 'document' ? 'in the claim' : 'only in the host-local record'}) before running the step again`, async () => {
      const firstMs = where === 'document' ? STEP_MS : 2 * STEP_MS;
      const {
        mesh,
        log,
        ids: [id],
      } = await oneStepMesh(server, where === 'document' ? { fork: 'all' } : { fork: 'all', leaseS: 12, stepMs: firstMs });
      const first = startAgent(mesh, 'first');
      await waitFor('the worker running', async () => (await timeline(log)).some((l) => l.event === 'alive'), 30_000, 50);
      await waitFor('the run recorded on this host', () => localRecord(mesh, id, 1), 10_000, 20);
      if (where === 'document')
        await waitFor(
          'the run identity in the claim',
          async () => {
            const doc = await mesh.db.get<DaqDocument>(id);
            return doc && stepRecord(doc, 'proc0')?.run;
          },
          10_000,
          50,
        );
      const supervisor = await supervisorOf(first);
      assert.ok(supervisor, 'the agent has a step supervisor');
      process.kill(supervisor, 'SIGKILL');
      await waitFor('the supervisor gone', () => !procStat(supervisor) || procStat(supervisor)?.state === 'Z', 5000, 20);
      await stopProcess(first, 'SIGKILL');
      if (where === 'host') {
        const doc = (await mesh.db.get<DaqDocument>(id)) as DaqDocument;
        assert.equal(
          stepRecord(doc, 'proc0')?.run,
          undefined,
          'killed before the first renewal: the claim does not name the run (else this variant proves nothing)',
        );
      }
      const [firstRun] = [...runsOf(await timeline(log)).values()].flat();
      // Without its supervisor only the leader dies (parent-death signal): the worker is left, as an unknown crash could leave it.
      const worker = [...firstRun.processes.keys()].find((pid) => pid !== firstRun.pgid) as number;
      await waitFor('the leader gone', async () => !(await remaining(firstRun)).includes(firstRun.pgid), 2000, 20);
      assert.ok((await remaining(firstRun)).includes(worker), 'the worker outlived agent and supervisor (else this test proves nothing)');

      const second = takeOver(mesh, 'second', 1);
      await waitFor('the step done', async () => (await mesh.db.get<DaqDocument>(id))?.status === 'good', 90_000, 200);
      await second.stop();
      const runs = runsOf(await timeline(log)).get(`${id} proc0`) ?? [];
      assert.equal(runs.length, 2);
      assert.equal(runs.filter((r) => r.completed).length, 1, 'exactly one completed run');
      assert.deepEqual(overlaps(runs), [], 'the earlier run was gone before the next one started');
      assert.ok(Math.max(...runs.map((r) => r.start)) < firstRun.start + firstMs, 'the next run started while the earlier would still have worked');
      assert.deepEqual(await remaining(firstRun), []);
      const secondLog = await readFile(join(mesh.dir, 'second.log'), 'utf8');
      // Before the claim, by the record the document names or the one kept on this host (agents/run-identity.ts).
      assert.match(secondLog, /killed 1 process\(es\) of the earlier run before claiming/, `found through the ${where} record`);
      assert.deepEqual(
        (await readdir(join(mesh.dir, 'logs', id))).filter((f) => f.endsWith('.run')),
        [],
        'both records removed: the earlier run proven gone, the second one over',
      );
    });
  }
});
