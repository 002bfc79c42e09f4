/**
 * `node dist/bench/dashboard.js [DOCS]`: what the status page costs on one embedded server with
 * DOCS documents (default 10,000): the first snapshot (every view index built), a warm snapshot,
 * and the delay from one write to the WebSocket message that shows it. The baseline measured in
 * the same run is the same snapshot on an empty database, so the ratio shows how the cost grows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { parseMeshConfig } from '../config/load.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../couchapp/push.js';
import { Database } from '../core/couch.js';
import { silentLogger } from '../core/log.js';
import { startServerChild } from '../cli/processes.js';
import { startDashboard } from '../dashboard/server.js';

const docs = Number(process.argv[2] ?? 10_000);
if (!Number.isInteger(docs) || docs < 1) throw new Error(`usage: node dist/bench/dashboard.js [DOCS], DOCS a positive integer (got ${process.argv[2]})`);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function measure(url: string, work: string, name: string, count: number): Promise<{ cold: number; warm: number; push: number }> {
  const raw = {
    database: name,
    doc_type: 'daqdocument',
    sites: { bench: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs') } },
    ingest: { site: 'bench', quiet_s: 1 },
    steps: ['proc0', 'proc1', 'proc2'].map((step) => ({ name: step, site: 'bench', run: ['/bin/true'], out: join(work, step, '{run_name}_{file_number}'), timeout_s: 60, max_attempts: 3, lease_s: 60 })),
  };
  const config = parseMeshConfig(raw, join(work, `${name}.json`));
  const db = new Database({ url, database: name });
  await db.ensure();
  await pushDesign(db, designDocument(config));
  const closed = (i: number) => {
    const run = `lg23b${String(Math.floor(i / 1000)).padStart(3, '0')}`;
    const file = `${run}_${String(i % 1000).padStart(3, '0')}`;
    return { _id: `run_${file}`, type: 'daqdocument', run_name: run, file_number: i % 1000, file: `/daq/${run}/${file}`, size_in_bytes: 0, daq_host: `daq${i % 3}`, date_closed: new Date().toISOString(), status: 'closed', history: [] };
  };
  for (let start = 0; start < count; start += 1000) await db.bulk(Array.from({ length: Math.min(1000, count - start) }, (_, k) => closed(start + k)));

  const dashboard = await startDashboard({ config, host: '127.0.0.1', port: 0, logger: silentLogger(), open: (site, database) => new Database({ url: site.server, database: database ?? name }) });
  try {
    let t = Date.now();
    await dashboard.published();
    const cold = Date.now() - t;
    const warm: number[] = [];
    for (let k = 0; k < 3; k++) {
      t = Date.now();
      await dashboard.published();
      warm.push(Date.now() - t);
    }
    const seen: Array<{ at: number; count: number }> = [];
    const ws = new WebSocket(`${dashboard.url.replace(/^http/, 'ws')}live`);
    ws.on('message', (data) => seen.push({ at: Date.now(), count: (JSON.parse(data.toString()) as { snapshot: { servers: Array<{ doc_count: number }> } }).snapshot.servers[0].doc_count }));
    await new Promise((resolve) => ws.once('open', resolve));
    const push: number[] = [];
    for (let k = 0; k < 5; k++) {
      await new Promise((r) => setTimeout(r, 300));
      const written = Date.now();
      await db.put(closed(count + k));
      const deadline = written + 120_000;
      while (!seen.some((s) => s.at >= written && s.count === count + k + 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const hit = seen.find((s) => s.at >= written && s.count === count + k + 1);
      push.push(hit ? hit.at - written : Number.NaN);
    }
    ws.terminate();
    return { cold, warm: median(warm), push: median(push) };
  } finally {
    await dashboard.close();
  }
}

const work = await mkdtemp(join(tmpdir(), 'mesh-bench-dashboard-'));
const server = await startServerChild('bench', join(work, 'couch'));
try {
  const empty = await measure(server.url, work, 'empty', 0);
  const full = await measure(server.url, work, 'full', docs);
  const row = (label: string, a: number, b: number) => `${label.padEnd(34)}${`${a} ms`.padStart(10)}${`${b} ms`.padStart(12)}${`×${(b / Math.max(1, a)).toFixed(1)}`.padStart(10)}`;
  process.stdout.write(`status page on one embedded server: 0 vs ${docs} documents (median of repeats)\n`);
  process.stdout.write(`${''.padEnd(34)}${'0 docs'.padStart(10)}${`${docs} docs`.padStart(12)}${'ratio'.padStart(10)}\n`);
  process.stdout.write(`${row('first snapshot (indexes built)', empty.cold, full.cold)}\n${row('warm snapshot', empty.warm, full.warm)}\n${row('write → WebSocket message', empty.push, full.push)}\n`);
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
