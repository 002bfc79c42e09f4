/**
 * Bench section "pipeline": the pipeline's speed against the limits of the server it runs on,
 * all measured in one run on that server, so the ratios hold whatever the machine's load. The
 * server is the embedded one the section starts, or any server given with `--server URL`
 * (bench/target.ts). On Apache CouchDB every validated write costs a round trip to its
 * JavaScript process, so the limit is `_bulk_docs` updates/s through the generated validator
 * divided by the validated writes one step really costs, counted from the revisions the run left.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMeshConfig } from '../config/load.js';
import type { MeshConfig } from '../config/types.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../store/designs.js';
import * as files from '../store/files.js';
import type { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import { MESH_MAIN, stopChild } from '../cli/processes.js';
import { type BenchRow, type BenchSection, ms, percentile, progress, ratio } from './report.js';
import { type BenchTarget, openTarget, shownUrl } from './target.js';
import { updateRate } from './validate.js';
import { Interrupted, waitUntil, within } from './wait.js';
import { historyTo } from '../core/provenance.js';
import { sleep } from '../core/sleep.js';

const TRUE = '/bin/true';
const SITE = 'bench';
/** The one-line validate_doc_update of the "trivial" baseline: what calling a validator at all costs. */
const TRIVIAL_VALIDATOR = 'function (newDoc) { if (newDoc.type === "mesh-bench-refused") throw({ forbidden: "refused" }); }';

interface AgentSettings {
  heartbeat_s: number;
  agent_silent_s: number;
}

/** The defaults of config/schema.ts: what an agent does unless told otherwise. */
const DEFAULT_AGENT: AgentSettings = { heartbeat_s: 10, agent_silent_s: 120 };

interface BenchDb {
  db: Database;
  /** The same database as the server admin sees it (design documents). */
  admin: Database;
  config: MeshConfig;
  configFile: string;
}

async function makeDb(target: BenchTarget, work: string, name: string, settings: AgentSettings = DEFAULT_AGENT, push = true): Promise<BenchDb> {
  const { db, admin } = await target.database(name);
  const raw = {
    database: db.name,
    doc_type: 'daqdocument',
    sites: { [SITE]: { server: target.url, reachable: true, long_running: true, log_dir: join(work, 'logs', name) } },
    ingest: { site: SITE, quiet_s: 1 },
    steps: [
      {
        name: 'proc0',
        site: SITE,
        run: [TRUE],
        out: join(work, 'out', name, 'proc0', '{run_name}_{file_number}'),
        timeout_s: 60,
        max_attempts: 3,
        lease_s: 60,
      },
    ],
    agent: { sweep_s: 2, heartbeat_s: settings.heartbeat_s, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
    alerts: { agent_silent_s: settings.agent_silent_s },
  };
  const configFile = join(work, `${name}.json`);
  await writeFile(configFile, JSON.stringify(raw));
  const config = parseMeshConfig(raw, configFile);
  if (push) await pushDesign(admin, designDocument(config));
  return { db, admin, config, configFile };
}

/** Closed documents as the site's ingest writes them, by the account `user` (the server checks it against the writer). */
function closedDocs(count: number, prefix: string, user: string | null): DaqDocument[] {
  return Array.from({ length: count }, (_, i) => ({
    _id: `${prefix}_${String(i).padStart(6, '0')}`,
    type: 'daqdocument',
    run_name: 'lg23b002',
    file_number: i,
    file: `/data/${prefix}/${i}`,
    size_in_bytes: 0,
    date_closed: new Date().toISOString(),
    status: 'closed',
    history: historyTo('closed', [], new Date().toISOString(), `${SITE}/ingest`, user),
  }));
}

type Validator = 'none' | 'trivial' | 'generated';

/**
 * `_bulk_docs` updates/s (batches of 500: claims, then successes, as the agents write them)
 * with no validate_doc_update, a one-line one and the generated one; best of `rounds`
 * alternating rounds, so that the machine's load falls on all three alike.
 */
async function updateRates(target: BenchTarget, work: string, count: number, rounds: number): Promise<Record<Validator, number>> {
  const dbs = {} as Record<Validator, BenchDb>;
  dbs.none = await makeDb(target, work, 'updates_none', DEFAULT_AGENT, false);
  dbs.trivial = await makeDb(target, work, 'updates_trivial', DEFAULT_AGENT, false);
  await dbs.trivial.admin.put({ _id: '_design/trivial', validate_doc_update: TRIVIAL_VALIDATOR });
  dbs.generated = await makeDb(target, work, 'updates_generated');
  const best: Record<Validator, number> = { none: 0, trivial: 0, generated: 0 };
  for (let round = 1; round <= rounds; round++) {
    for (const variant of ['none', 'trivial', 'generated'] as const) {
      progress(
        'pipeline',
        `round ${round}/${rounds}: ${count} claims and ${count} successes, ${variant === 'none' ? 'no' : `the ${variant}`} validate_doc_update`,
      );
      best[variant] = Math.max(best[variant], await updateRate(dbs[variant].db, dbs[variant].config, count, `r${round}`));
    }
  }
  return best;
}

/** Spawns of the no-op step program per second, two at a time (this machine has two cores). */
async function spawnRate(count: number, parallel = 2): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next++ < count) await once(spawn(TRUE, [], { stdio: 'ignore' }), 'exit');
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

/** Put → a longpoll `_changes` reader opened before the put sees it, one document at a time: the floor of ready → claimed. */
async function feedLatencies(db: Database, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (const doc of closedDocs(count, 'feed', db.user)) {
    const since = (await db.info()).update_seq;
    const seen = db.changes(since, { _id: doc._id }, { timeoutMs: 30_000 });
    const written = performance.now();
    await db.put(doc);
    if (!(await within(seen, 40_000, `${doc._id} in the changes feed`)).results.some((r) => r.id === doc._id))
      throw new Error(`the changes feed did not show ${doc._id} within 30 s`);
    latencies.push(performance.now() - written);
  }
  return latencies.sort((a, b) => a - b);
}

interface BenchAgent {
  /** SIGTERM, wait for the exit (SIGKILL after 15 s); the agent's peak RSS in MiB. Idempotent. */
  stop(): Promise<number>;
}

/** An agent process, with the server's credentials in its environment as a real agent gets them. */
function runAgent(target: BenchTarget, configFile: string, name: string, concurrency: number, logFile: number, started: BenchAgent[]): BenchAgent {
  const env = target.agentEnv(SITE, { MESH_LOG_LEVEL: 'warn' });
  const child = spawn(process.execPath, [MESH_MAIN, '--config', configFile, 'agent', '--site', SITE, '--name', name, '--concurrency', String(concurrency)], {
    stdio: ['ignore', logFile, logFile],
    env,
  });
  let stopped: Promise<number> | undefined;
  const agent = {
    stop: () =>
      (stopped ??= (async () => {
        const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
        const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
        await stopChild(child);
        return peakKb / 1024;
      })()),
  };
  started.push(agent);
  return agent;
}

/**
 * Waits until `count` documents have `step` done, following `_changes` with a Mango selector
 * (judged by the server itself, no JavaScript): polling a view instead would make the server
 * index every revision through its JavaScript process while it is measured, which the
 * `_bulk_docs` baselines do not pay (on Apache CouchDB that cost a fifth of the steps/s).
 * The agent's own sweeps still query the views, as they do in production.
 */
async function waitForDone(db: Database, step: string, count: number, signal: AbortSignal | undefined): Promise<void> {
  const done = new Set<string>();
  let since: string | number = 0;
  const deadline = Date.now() + 300_000;
  while (done.size < count) {
    if (signal?.aborted) throw new Interrupted(`${count} documents done (${step}) in ${db.name}`);
    if (Date.now() > deadline) throw new Error(`timed out after 300 s waiting for ${count} documents done (${step}) in ${db.name}: ${done.size} done`);
    const batch: { last_seq: string | number; results: Array<{ id: string }> } = await within(
      db.changes(since, { [step]: { exit_code: 0 } }, { timeoutMs: 5000, limit: 1000, ...(signal ? { signal } : {}) }),
      40_000,
      `the changes feed of ${db.name}`,
    );
    since = batch.last_seq;
    for (const row of batch.results) done.add(row.id);
  }
}

/** Revision number N of a document = N writes of it. */
function revNumber(rev: string | undefined): number {
  return Number.parseInt(rev ?? '0', 10) || 0;
}

interface WriteCount {
  /** Writes of the data documents after their creation (claims, renewals, results). */
  documents: number;
  /** Writes of the agents' heartbeat documents. */
  heartbeats: number;
  /** How many data documents were written N times after their creation, per N. */
  spread: Map<number, number>;
}

/**
 * The validated writes a run left in its own database, from the documents' revision numbers
 * (`_local` checkpoints are not validated, and `_all_docs` does not list them; the design
 * document was written before the run).
 */
async function countWrites(db: Database): Promise<WriteCount> {
  const { rows } = await db.allDocs<unknown>({});
  const count: WriteCount = { documents: 0, heartbeats: 0, spread: new Map() };
  for (const row of rows) {
    const id = row.id ?? '';
    const n = revNumber(row.value?.rev);
    if (id.startsWith('_design/')) continue;
    if (id.startsWith('mesh-agent:')) count.heartbeats += n;
    else {
      count.documents += n - 1;
      count.spread.set(n - 1, (count.spread.get(n - 1) ?? 0) + 1);
    }
  }
  return count;
}

function spreadText(spread: Map<number, number>): string {
  return [...spread]
    .sort(([a], [b]) => a - b)
    .map(([writes, docs]) => `${docs} × ${writes}`)
    .join(', ');
}

/** Heartbeat writes per minute of an agent with nothing to do, over `idleS` seconds after its first heartbeat. */
async function idleHeartbeats(
  target: BenchTarget,
  work: string,
  settings: AgentSettings,
  idleS: number,
  log: number,
  agents: BenchAgent[],
  signal?: AbortSignal,
): Promise<number> {
  const { db, configFile } = await makeDb(target, work, 'idle', settings);
  const agent = runAgent(target, configFile, 'bench-idle', 1, log, agents);
  const id = `mesh-agent:${SITE}:bench-idle`;
  const first = await waitUntil("the idle agent's first heartbeat", async () => db.get<{ _rev: string }>(id), { timeoutMs: 60_000, everyMs: 50, signal });
  const from = performance.now();
  await sleep(idleS * 1000, signal);
  const last = await db.get<{ _rev: string }>(id);
  const minutes = (performance.now() - from) / 60_000;
  await agent.stop();
  return (revNumber(last?._rev) - revNumber(first._rev)) / minutes;
}

export interface PipelineOptions {
  /** Tiny counts: shows the section works, its figures mean little. */
  quick: boolean;
  /** A CouchDB-compatible server to measure instead of a new embedded one (credentials: COUCHDB_USER, COUCHDB_PASSWORD). */
  server?: string;
  signal?: AbortSignal;
}

export async function runPipeline(options: PipelineOptions): Promise<BenchSection> {
  const sizes = options.quick
    ? // Tiny, so that the test of every section (test/integration/bench.test.ts) stays cheap: each figure still measured.
      { updates: 200, rounds: 1, spawns: 20, c1: 10, cN: 20, c64: 20, latency: 5, idleS: 6, idle: { heartbeat_s: 1, agent_silent_s: 6 } }
    : { updates: 3000, rounds: 2, spawns: 600, c1: 300, cN: 600, c64: 1200, latency: 100, idleS: 120, idle: DEFAULT_AGENT };
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-'));
  const log = openSync(join(work, 'bench.log'), 'a');
  const target = await openTarget({ server: options.server, dataDir: join(work, 'couch'), logFile: log, work, site: SITE });
  const where = target.kind === 'embedded' ? 'one embedded server' : shownUrl(target.url);
  const rows: BenchRow[] = [];
  const agents: BenchAgent[] = [];
  try {
    const rates = await updateRates(target, work, sizes.updates, sizes.rounds);
    progress('pipeline', `spawn rate of ${TRUE} (${sizes.spawns})`);
    const spawns = await spawnRate(sizes.spawns);
    const docsPerS = (n: number) => `${n.toFixed(0)} docs/s`;
    rows.push({ measure: '_bulk_docs updates, no validate_doc_update', value: docsPerS(rates.none) });
    rows.push({
      measure: '_bulk_docs updates, a one-line validate_doc_update',
      value: docsPerS(rates.trivial),
      baseline: `${docsPerS(rates.none)} none`,
      ratio: ratio(rates.trivial, rates.none),
    });
    rows.push({
      measure: '_bulk_docs updates, the generated validate_doc_update',
      value: docsPerS(rates.generated),
      baseline: `${docsPerS(rates.trivial)} one-line`,
      ratio: ratio(rates.generated, rates.trivial),
    });
    rows.push({ measure: `spawn of ${TRUE}, 2 at a time`, value: `${spawns.toFixed(0)}/s` });
    let peakRss = 0;
    for (const concurrency of [1, 4, 16, 64]) {
      const count = concurrency === 1 ? sizes.c1 : concurrency === 64 ? sizes.c64 : sizes.cN;
      progress('pipeline', `agent at concurrency ${concurrency}, ${count} one-step documents`);
      const { db, configFile } = await makeDb(target, work, `pipeline_c${concurrency}`);
      await db.bulk(closedDocs(count, `c${concurrency}`, db.user));
      await files.buildIndexes(db); // before the clock starts
      const started = performance.now();
      const agent = runAgent(target, configFile, `bench-c${concurrency}`, concurrency, log, agents);
      await waitForDone(db, 'proc0', count, options.signal);
      const rate = count / ((performance.now() - started) / 1000);
      peakRss = Math.max(peakRss, await agent.stop());
      const writes = await countWrites(db);
      const perStep = (writes.documents + writes.heartbeats) / count;
      const limit = rates.generated / perStep;
      const c = String(concurrency).padStart(2);
      rows.push({
        measure: `validated writes per step, concurrency ${c}`,
        value: `${perStep.toFixed(2)} (documents ${(writes.documents / count).toFixed(2)}: ${spreadText(writes.spread)}; heartbeats ${writes.heartbeats})`,
      });
      rows.push({
        measure: `pipeline steps/s, agent concurrency ${c}`,
        value: `${rate.toFixed(1)} steps/s`,
        baseline: `${limit.toFixed(0)} steps/s = generated ${rates.generated.toFixed(0)}/s ÷ ${perStep.toFixed(2)}`,
        ratio: ratio(rate, limit),
      });
      rows.push({
        measure: `  the same against the spawn limit`,
        value: `${rate.toFixed(1)} steps/s`,
        baseline: `${spawns.toFixed(0)} spawns/s`,
        ratio: ratio(rate, spawns),
      });
    }
    // Ready → claimed: documents written one at a time to an idle agent.
    progress('pipeline', `ready → claimed, ${sizes.latency} documents written one at a time`);
    const feed = await feedLatencies((await makeDb(target, work, 'changes_floor')).db, sizes.latency);
    const { db, configFile } = await makeDb(target, work, 'latency');
    const agent = runAgent(target, configFile, 'bench-latency', 4, log, agents);
    await new Promise((r) => setTimeout(r, 1500));
    const docs = closedDocs(sizes.latency, 'lat', db.user);
    for (const doc of docs) {
      await db.put({ ...doc, date_closed: new Date().toISOString() });
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitForDone(db, 'proc0', docs.length, options.signal);
    peakRss = Math.max(peakRss, await agent.stop());
    const { rows: written } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'lat_', endkey: 'lat_\ufff0' });
    const latencies = written
      .map((r) => Date.parse((r.doc?.proc0 as { started: string }).started) - Date.parse(r.doc?.date_closed as string))
      .sort((a, b) => a - b);
    for (const p of [50, 95]) {
      rows.push({
        measure: `ready → claimed by an idle agent, p${p}`,
        value: ms(percentile(latencies, p)),
        baseline: `${ms(percentile(feed, p))} put → _changes p${p}`,
        ratio: ratio(percentile(latencies, p), percentile(feed, p)),
      });
    }
    progress(
      'pipeline',
      `an idle agent's heartbeats for ${sizes.idleS} s (heartbeat_s ${sizes.idle.heartbeat_s}, alerts.agent_silent_s ${sizes.idle.agent_silent_s})`,
    );
    const idlePerMinute = await idleHeartbeats(target, work, sizes.idle, sizes.idleS, log, agents, options.signal);
    const everyBeat = 60 / sizes.idle.heartbeat_s;
    rows.push({
      measure: `heartbeat writes per idle minute (heartbeat_s ${sizes.idle.heartbeat_s}, agent_silent_s ${sizes.idle.agent_silent_s})`,
      value: idlePerMinute.toFixed(1),
      baseline: `${everyBeat.toFixed(1)} = one every heartbeat_s`,
      ratio: ratio(idlePerMinute, everyBeat),
    });
    rows.push({ measure: 'agent peak RSS', value: `${peakRss.toFixed(0)} MiB` });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await target.close();
    await rm(work, { recursive: true, force: true });
  }
  return {
    title: `pipeline: one-step documents on ${where} vs its validated-write and spawn limits`,
    command: `node dist/bench/main.js --only pipeline${options.server ? ` --server ${shownUrl(options.server)}` : ''}${options.quick ? ' --quick' : ''}`,
    rows,
    notes: [
      `step = ${TRUE} (no work), so the pipeline's own cost is what is measured; one spawn per step`,
      `updates: best of ${sizes.rounds} alternating round(s) of ${sizes.updates} claims then ${sizes.updates} successes in batches of 500, into a database of their own per validator; the writer is ${target.writer ? `the run's agent account (role mesh-agent:${SITE}), created with COUCHDB_USER's credentials and deleted at the end` : 'the admin party'}`,
      'validated writes per step: every revision the run left (data documents after their creation, heartbeat documents) ÷ steps; "documents" lists how many documents were written how many times (a claim that is also the start, the result, renewals)',
      'ratio = steps/s ÷ (updates/s through the generated validate_doc_update ÷ validated writes per step): 1.0× would mean the pipeline writes as fast as bulk updates go through the validator; the spawn row is steps/s ÷ spawns/s',
      "agent, server and this process share the machine's cores: at concurrency ≥ 4 the CPU, not waiting, is the limit; concurrency 64 shows how far larger requests (claims and outcomes of many steps in one `_bulk_docs`) carry",
      "done: followed in `_changes` with a Mango selector (no view is queried by the bench while it measures; the agent's sweeps query the views as in production)",
      "ready → claimed: from the document's write (date_closed) to its claim (proc0.started, the claim's own clock); baseline: a bare longpoll `_changes` reader on the same server seeing a put",
      `heartbeats: an agent with nothing to do, its heartbeat's revisions over ${sizes.idleS} s after its first; baseline: one write every heartbeat_s (the cadence before issue 11)`,
    ],
  };
}
