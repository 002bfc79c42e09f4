/**
 * Bench section "pipeline": the pipeline's speed against the limits of the machine it runs on,
 * all measured in one run on one embedded server, so the ratios hold whatever the machine's load.
 */
import * as files from '../store/files.js';
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
import { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import { MESH_MAIN, startServerChild, stopChild } from '../cli/processes.js';
import { type BenchSection, ms, percentile, progress, ratio } from './report.js';
import { waitUntil, within } from './wait.js';
import { historyTo } from '../core/provenance.js';

const TRUE = '/bin/true';

async function makeDb(url: string, work: string, name: string, steps: number, leaseS = 60): Promise<{ db: Database; config: MeshConfig; configFile: string }> {
  const raw = {
    database: name,
    doc_type: 'daqdocument',
    sites: { bench: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs', name) } },
    ingest: { site: 'bench', quiet_s: 1 },
    steps: Array.from({ length: steps }, (_, i) => ({ name: `proc${i}`, site: 'bench', run: [TRUE], out: join(work, 'out', name, `proc${i}`, '{run_name}_{file_number}'), timeout_s: 60, max_attempts: 3, lease_s: leaseS })),
    agent: { sweep_s: 2, heartbeat_s: 5, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
  };
  const configFile = join(work, `${name}.json`);
  await writeFile(configFile, JSON.stringify(raw));
  const config = parseMeshConfig(raw, configFile);
  const db = new Database({ url, database: name });
  await db.ensure();
  await pushDesign(db, designDocument(config));
  return { db, config, configFile };
}

function closedDocs(count: number, prefix: string): DaqDocument[] {
  return Array.from({ length: count }, (_, i) => ({
    _id: `${prefix}_${String(i).padStart(6, '0')}`, type: 'daqdocument', run_name: 'lg23b002', file_number: i, file: `/data/${prefix}/${i}`,
    size_in_bytes: 0, date_closed: new Date().toISOString(), status: 'closed', history: historyTo('closed', []),
  }));
}

/** Bulk *updates* (the pipeline only updates), in batches of 500, through the validate function. */
async function rawUpdateRate(url: string, work: string, count: number): Promise<number> {
  const { db } = await makeDb(url, work, 'raw_writes', 1);
  const docs = closedDocs(count, 'raw');
  const revs = new Map<string, string>();
  for (let i = 0; i < docs.length; i += 500) for (const r of await db.bulk(docs.slice(i, i + 500))) revs.set(r.id, r.rev as string);
  const started = performance.now();
  for (let i = 0; i < docs.length; i += 500) {
    await db.bulk(docs.slice(i, i + 500).map((d) => ({ ...d, _rev: revs.get(d._id), touched: Date.now() })));
  }
  return docs.length / ((performance.now() - started) / 1000);
}

/** Spawns of the no-op step program per second, two at a time (this machine has two cores). */
async function spawnRate(count: number, parallel = 2): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next++ < count) await once(spawn(TRUE, [], { stdio: 'ignore' }), 'exit');
  }));
  return count / ((performance.now() - started) / 1000);
}

/** Put → a longpoll `_changes` reader opened before the put sees it, one document at a time: the floor of ready → claimed. */
async function feedLatencies(db: Database, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (const doc of closedDocs(count, 'feed')) {
    const since = (await db.info()).update_seq;
    const seen = db.changes(since, { _id: doc._id }, { timeoutMs: 30_000 });
    const written = performance.now();
    await db.put(doc);
    if (!(await within(seen, 40_000, `${doc._id} in the changes feed`)).results.some((r) => r.id === doc._id)) throw new Error(`the changes feed did not show ${doc._id} within 30 s`);
    latencies.push(performance.now() - written);
  }
  return latencies.sort((a, b) => a - b);
}

interface BenchAgent {
  /** SIGTERM, wait for the exit (SIGKILL after 15 s); the agent's peak RSS in MiB. Idempotent. */
  stop(): Promise<number>;
}

function runAgent(configFile: string, name: string, concurrency: number, logFile: number, started: BenchAgent[]): BenchAgent {
  const child = spawn(process.execPath, [MESH_MAIN, '--config', configFile, 'agent', '--site', 'bench', '--name', name, '--concurrency', String(concurrency)], { stdio: ['ignore', logFile, logFile], env: { ...process.env, MESH_LOG_LEVEL: 'warn' } });
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

function waitForDone(db: Database, step: string, count: number, signal: AbortSignal | undefined): Promise<number> {
  return waitUntil(
    `${count} documents done (${step}) in ${db.name}`,
    async () => {
      return (await files.doneCount(db, step)) >= count && count;
    },
    { timeoutMs: 300_000, signal },
  );
}

export interface PipelineOptions {
  /** Tiny counts: shows the section works, its figures mean little. */
  quick: boolean;
  signal?: AbortSignal;
}

export async function runPipeline(options: PipelineOptions): Promise<BenchSection> {
  const sizes = options.quick ? { raw: 500, spawns: 60, c1: 30, cN: 60, latency: 10 } : { raw: 4000, spawns: 600, c1: 300, cN: 600, latency: 100 };
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-'));
  const log = openSync(join(work, 'bench.log'), 'a');
  const server = await startServerChild('bench', join(work, 'couch'), { logFile: log });
  const rows: BenchSection['rows'] = [];
  const agents: BenchAgent[] = [];
  try {
    progress('pipeline', `raw _bulk_docs update rate (${sizes.raw} documents)`);
    const raw = await rawUpdateRate(server.url, work, sizes.raw);
    progress('pipeline', `spawn rate of ${TRUE} (${sizes.spawns})`);
    const spawns = await spawnRate(sizes.spawns);
    const writesPerStep = 2; // the claim and the result; renewals only for steps longer than a third of the lease
    const limit = Math.min(raw / writesPerStep, spawns);
    const limitText = `${limit.toFixed(0)} steps/s = min(raw/${writesPerStep}, spawn)`;
    rows.push({ measure: 'raw _bulk_docs updates (batches of 500)', value: `${raw.toFixed(0)} docs/s` });
    rows.push({ measure: `spawn of ${TRUE}, 2 at a time`, value: `${spawns.toFixed(0)}/s` });
    let peakRss = 0;
    for (const concurrency of [1, 4, 16]) {
      const count = concurrency === 1 ? sizes.c1 : sizes.cN;
      progress('pipeline', `agent at concurrency ${concurrency}, ${count} one-step documents`);
      const { db, configFile } = await makeDb(server.url, work, `pipeline_c${concurrency}`, 1);
      await db.bulk(closedDocs(count, `c${concurrency}`));
      await files.buildIndexes(db); // before the clock starts
      const started = performance.now();
      const agent = runAgent(configFile, `bench-c${concurrency}`, concurrency, log, agents);
      await waitForDone(db, 'proc0', count, options.signal);
      const rate = count / ((performance.now() - started) / 1000);
      peakRss = Math.max(peakRss, await agent.stop());
      rows.push({ measure: `pipeline steps/s, agent concurrency ${String(concurrency).padStart(2)}`, value: `${rate.toFixed(1)} steps/s`, baseline: limitText, ratio: ratio(rate, limit) });
    }
    // Ready → claimed: documents written one at a time to an idle agent.
    progress('pipeline', `ready → claimed, ${sizes.latency} documents written one at a time`);
    const feed = await feedLatencies((await makeDb(server.url, work, 'changes_floor', 1)).db, sizes.latency);
    const { db, configFile } = await makeDb(server.url, work, 'latency', 1);
    const agent = runAgent(configFile, 'bench-latency', 4, log, agents);
    await new Promise((r) => setTimeout(r, 1500));
    const docs = closedDocs(sizes.latency, 'lat');
    for (const doc of docs) {
      await db.put({ ...doc, date_closed: new Date().toISOString() });
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitForDone(db, 'proc0', docs.length, options.signal);
    peakRss = Math.max(peakRss, await agent.stop());
    const { rows: written } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'lat_', endkey: 'lat_\ufff0' });
    const latencies = written.map((r) => Date.parse((r.doc?.proc0 as { started: string }).started) - Date.parse(r.doc?.date_closed as string)).sort((a, b) => a - b);
    for (const p of [50, 95]) {
      rows.push({ measure: `ready → claimed by an idle agent, p${p}`, value: ms(percentile(latencies, p)), baseline: `${ms(percentile(feed, p))} put → _changes p${p}`, ratio: ratio(percentile(latencies, p), percentile(feed, p)) });
    }
    rows.push({ measure: 'agent peak RSS', value: `${peakRss.toFixed(0)} MiB` });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
  return {
    title: 'pipeline: one-step documents on one embedded server vs the raw write and spawn limits',
    command: `node dist/bench/main.js --only pipeline${options.quick ? ' --quick' : ''}`,
    rows,
    notes: [
      `step = ${TRUE} (no work), so the pipeline's own cost is what is measured; each step costs 2 writes (claim, result) and 1 spawn`,
      'ratio = steps/s ÷ min(raw update rate / 2, spawn rate): 1.0× would mean the agent adds nothing to the unavoidable writes and spawns',
      'agent, server and this process share the machine\'s cores: at concurrency ≥ 4 the CPU, not waiting, is the limit',
      'ready → claimed: from the document\'s write (date_closed) to its claim (proc0.started, the claim\'s own clock); baseline: a bare longpoll `_changes` reader on the same server seeing a put',
    ],
  };
}
