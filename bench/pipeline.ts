/**
 * `npm run bench`: the pipeline's speed against the limits of the machine it runs on, all
 * measured in one run on one embedded server, so the ratios hold whatever the machine's load.
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
import { pushDesign } from '../couchapp/push.js';
import { Database } from '../core/couch.js';
import type { DaqDocument } from '../core/document.js';
import { MESH_MAIN, startServerChild } from '../cli/processes.js';

const TRUE = '/bin/true';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

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
    size_in_bytes: 0, date_closed: new Date().toISOString(), status: 'closed', history: [],
  }));
}

/** Bulk *updates* (the pipeline only updates), in batches of 500, through the validate function. */
async function rawUpdateRate(url: string, work: string): Promise<number> {
  const { db } = await makeDb(url, work, 'raw_writes', 1);
  const docs = closedDocs(4000, 'raw');
  const revs = new Map<string, string>();
  for (let i = 0; i < docs.length; i += 500) for (const r of await db.bulk(docs.slice(i, i + 500))) revs.set(r.id, r.rev as string);
  const started = performance.now();
  for (let i = 0; i < docs.length; i += 500) {
    await db.bulk(docs.slice(i, i + 500).map((d) => ({ ...d, _rev: revs.get(d._id), date_closed: new Date().toISOString() })));
  }
  return docs.length / ((performance.now() - started) / 1000);
}

/** Spawns of the no-op step program per second, two at a time (this machine has two cores). */
async function spawnRate(count = 600, parallel = 2): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next++ < count) await once(spawn(TRUE, [], { stdio: 'ignore' }), 'exit');
  }));
  return count / ((performance.now() - started) / 1000);
}

async function runAgent(configFile: string, name: string, concurrency: number, logFile: number): Promise<{ pid: number | undefined; stop: () => Promise<number> }> {
  const child = spawn(process.execPath, [MESH_MAIN, '--config', configFile, 'agent', '--site', 'bench', '--name', name, '--concurrency', String(concurrency)], { stdio: ['ignore', logFile, logFile], env: { ...process.env, MESH_LOG_LEVEL: 'warn' } });
  return {
    pid: child.pid,
    stop: async () => {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
      return peakKb / 1024;
    },
  };
}

async function waitForDone(db: Database, step: string, count: number): Promise<void> {
  for (;;) {
    const { rows } = await db.view<number>('mesh', 'done', { key: step });
    if ((rows[0]?.value ?? 0) >= count) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-'));
  const log = openSync(join(work, 'bench.log'), 'a');
  const server = await startServerChild('bench', join(work, 'couch'), { logFile: log });
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    console.log(line);
  };
  try {
    const raw = await rawUpdateRate(server.url, work);
    const spawns = await spawnRate();
    const writesPerStep = 2; // the claim and the result; renewals only for steps longer than a third of the lease
    const limit = Math.min(raw / writesPerStep, spawns);
    say(`raw _bulk_docs updates: ${raw.toFixed(0)} docs/s; spawn of ${TRUE}: ${spawns.toFixed(0)}/s; limit = min(raw/${writesPerStep}, spawn) = ${limit.toFixed(0)} steps/s`);
    let peakRss = 0;
    for (const concurrency of [1, 4, 16]) {
      const count = concurrency === 1 ? 300 : 600;
      const { db, configFile } = await makeDb(server.url, work, `pipeline_c${concurrency}`, 1);
      await db.bulk(closedDocs(count, `c${concurrency}`));
      await db.view('mesh', 'ready', { limit: 1 }); // index built before the clock starts
      const started = performance.now();
      const agent = await runAgent(configFile, `bench-c${concurrency}`, concurrency, log);
      await waitForDone(db, 'proc0', count);
      const rate = count / ((performance.now() - started) / 1000);
      peakRss = Math.max(peakRss, await agent.stop());
      say(`pipeline, concurrency ${String(concurrency).padStart(2)}: ${rate.toFixed(1)} steps/s = ${(rate / limit).toFixed(2)} of the limit`);
    }
    // Ready → claimed: documents written one at a time to an idle agent.
    const { db, configFile } = await makeDb(server.url, work, 'latency', 1);
    const agent = await runAgent(configFile, 'bench-latency', 4, log);
    await new Promise((r) => setTimeout(r, 1500));
    const docs = closedDocs(100, 'lat');
    for (const doc of docs) {
      await db.put({ ...doc, date_closed: new Date().toISOString() });
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitForDone(db, 'proc0', docs.length);
    peakRss = Math.max(peakRss, await agent.stop());
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'lat_', endkey: 'lat_\ufff0' });
    const latencies = rows.map((r) => Date.parse((r.doc?.proc0 as { started: string }).started) - Date.parse(r.doc?.date_closed as string)).sort((a, b) => a - b);
    say(`ready → claimed: p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms (${latencies.length} documents, changes feed)`);
    say(`agent peak RSS: ${peakRss.toFixed(0)} MiB`);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
