/**
 * `node dist/bench/flow.js [--docs N]`: what the flow figures, `/metrics` and the alerts cost on
 * top of `mesh status`, with N documents (default 100,000) in one embedded database: files spread
 * over the last 48 hours, most done, some in progress, failed or not started. Prints the time
 * of the first query of each view (its index build), then the median of 5 runs of meshStatus
 * (the baseline), flowStatus and metricsText, as ratios to the baseline measured in the same run.
 */
import * as files from '../store/files.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMeshConfig } from '../config/load.js';
import { flowStatus } from '../coordinator/flow.js';
import { metricsText } from '../coordinator/metrics.js';
import { meshStatus } from '../coordinator/status.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../store/designs.js';
import { Database } from '../store/database.js';
import { startServerChild } from '../cli/processes.js';
import { historyTo } from '../core/provenance.js';

const STEPS = ['proc0', 'proc1', 'proc2'];

function argument(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} expects a positive integer, got ${process.argv[i + 1]}`);
  return value;
}

/** File i: closed within the last 48 h; 80 % done, then in progress, failed and untouched files in turn. */
function document(i: number, now: number): object {
  const closed = now - ((i * 7919) % (48 * 3600)) * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();
  const done = (finished: number, duration: number) => ({
    ok: true,
    attempts: 1,
    site: 'bench',
    agent: 'b',
    started: iso(finished - duration * 1000),
    finished: iso(finished),
    duration_s: duration,
  });
  const base = {
    _id: `run_lg23b002_${String(i).padStart(6, '0')}`,
    type: 'daqdocument',
    run_name: `lg23b${String(Math.floor(i / 1000)).padStart(3, '0')}`,
    file_number: i % 1000,
    file: `/data/${i}`,
    size_in_bytes: 1,
    date_closed: iso(closed),
  };
  const kind = i % 20;
  const p0 = closed + (60 + (i % 600)) * 1000;
  const p1 = p0 + (600 + (i % 3600)) * 1000;
  const p2 = p1 + (300 + (i % 1800)) * 1000;
  const at = (status: string) => ({ status, history: historyTo(status, ['proc0', 'proc1', 'proc2'], iso(closed)) });
  if (kind < 16) return { ...base, ...at('good'), proc0: done(p0, 20), proc1: done(p1, 300), proc2: done(p2, 120) };
  if (kind < 18)
    return {
      ...base,
      ...at('proc1 in progress'),
      proc0: done(p0, 20),
      pending: { proc1: { attempts: 1, site: 'bench', agent: 'b', host: 'h', started: iso(p0), lease_until: iso(now + 3600_000) } },
    };
  if (kind < 19)
    return {
      ...base,
      ...at('proc2 failed'),
      proc0: done(p0, 20),
      proc1: done(p1, 300),
      pending: { proc2: { ok: false, attempts: 3, site: 'bench', agent: 'b', reason: 'exited with 1', exit_code: 1 } },
    };
  return { ...base, ...at('closed') };
}

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function median(fn: () => Promise<unknown>, runs = 5): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await timed(fn));
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

async function main(): Promise<void> {
  const count = argument('--docs', 100_000);
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-flow-'));
  const server = await startServerChild('bench', join(work, 'couch'));
  try {
    const raw = {
      database: 'flowbench',
      sites: { bench: { server: server.url, reachable: true, long_running: true, log_dir: join(work, 'logs') } },
      ingest: { site: 'bench' },
      steps: STEPS.map((name) => ({ name, site: 'bench', run: ['true'], out: join(work, name, '{run_name}_{file_number}') })),
      targets: { proc0: '15m', proc1: '1h', proc2: '2h' },
    };
    const configFile = join(work, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw));
    const config = parseMeshConfig(raw, configFile);
    const db = new Database({ url: server.url, database: config.database });
    await db.ensure();
    await pushDesign(db, designDocument(config));
    const now = Date.now();
    const seeding = await timed(async () => {
      for (let start = 0; start < count; start += 1000) {
        await db.bulk(Array.from({ length: Math.min(1000, count - start) }, (_, k) => document(start + k, now)));
      }
    });
    console.log(`seeded ${count} documents in ${(seeding / 1000).toFixed(1)} s`);
    console.log(`first query of _design/mesh (index build): ${((await timed(() => files.buildIndexes(db))) / 1000).toFixed(1)} s`);
    const open = () => db;
    const at = new Date(now);
    const status = await median(() => meshStatus(config, open, at));
    const flowNoChart = await median(() => flowStatus(config, db, { now: at, windowMs: 3600_000, hours: 0, maxRows: 1000, lateLimit: 5 }));
    const flow = await median(() => flowStatus(config, db, { now: at, windowMs: 3600_000, hours: 24 }));
    const flowWide = await median(() => flowStatus(config, db, { now: at, windowMs: 24 * 3600_000, hours: 24 }));
    const metrics = await median(() => metricsText(config, open, at));
    const sample = await flowStatus(config, db, { now: at, windowMs: 24 * 3600_000, hours: 24 });
    console.log(`meshStatus (baseline)         ${status.toFixed(0)} ms`);
    console.log(
      `flowStatus as mesh status    ${flowNoChart.toFixed(0)} ms  = ${(flowNoChart / status).toFixed(2)} x baseline (1 h window, no chart, 1,000 rows, 5 late files)`,
    );
    console.log(`flowStatus, 1 h window        ${flow.toFixed(0)} ms  = ${(flow / status).toFixed(2)} x baseline (24 h chart)`);
    console.log(
      `flowStatus, 24 h window       ${flowWide.toFixed(0)} ms  = ${(flowWide / status).toFixed(2)} x baseline (24 h chart; capped: ${sample.latency.map((l) => `${l.stage} ${l.sample}/${l.count}`).join(', ')})`,
    );
    console.log(`metricsText (status + flow)   ${metrics.toFixed(0)} ms  = ${(metrics / status).toFixed(2)} x baseline`);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
