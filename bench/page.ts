/**
 * The `page` section of `npm run bench`: what the status page costs on one embedded server with
 * many documents (issue 4: usable with 100,000): the first snapshot (every view index built), a
 * warm snapshot, and the delay from one write to the WebSocket message that shows it. The
 * baseline measured in the same run is the same on an empty database.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { parseMeshConfig } from '../config/load.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../store/designs.js';
import { Database } from '../store/database.js';
import { silentLogger } from '../core/log.js';
import { startServerChild } from '../cli/processes.js';
import { startDashboard } from '../dashboard/server.js';
import { type BenchSection, median, progress } from './report.js';
import { Interrupted } from './wait.js';
import { historyTo } from '../core/provenance.js';

interface PageCost {
  /** First snapshot: every view index of the status page built. */
  cold: number;
  warm: number;
  /** One write → the WebSocket message whose counts include it (median of 5). */
  push: number;
}

function closedDoc(i: number) {
  const run = `lg23b${String(Math.floor(i / 1000)).padStart(3, '0')}`;
  const file = `${run}_${String(i % 1000).padStart(3, '0')}`;
  return {
    _id: `run_${file}`,
    type: 'daqdocument',
    run_name: run,
    file_number: i % 1000,
    file: `/daq/${run}/${file}`,
    size_in_bytes: 0,
    daq_host: `daq${i % 3}`,
    date_closed: new Date().toISOString(),
    status: 'closed',
    history: historyTo('closed', []),
  };
}

async function measure(url: string, work: string, name: string, count: number, signal?: AbortSignal): Promise<PageCost> {
  const raw = {
    database: name,
    doc_type: 'daqdocument',
    sites: { bench: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs') } },
    ingest: { site: 'bench', quiet_s: 1 },
    steps: ['proc0', 'proc1', 'proc2'].map((step) => ({
      name: step,
      site: 'bench',
      run: ['/bin/true'],
      out: join(work, step, '{run_name}_{file_number}'),
      timeout_s: 60,
      max_attempts: 3,
      lease_s: 60,
    })),
  };
  const config = parseMeshConfig(raw, join(work, `${name}.json`));
  const db = new Database({ url, database: name });
  await db.ensure();
  await pushDesign(db, designDocument(config));
  for (let start = 0; start < count; start += 1000) {
    if (signal?.aborted) throw new Interrupted('page');
    await db.bulk(Array.from({ length: Math.min(1000, count - start) }, (_, k) => closedDoc(start + k)));
    if ((start / 1000) % 20 === 19) progress('page', `  ${start + 1000}/${count} documents written`);
  }

  const dashboard = await startDashboard({
    config,
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger(),
    open: (site, database) => new Database({ url: site.server, database: database ?? name }),
  });
  try {
    let t = performance.now();
    await dashboard.published();
    const cold = performance.now() - t;
    const warm: number[] = [];
    for (let k = 0; k < 3; k++) {
      t = performance.now();
      await dashboard.published();
      warm.push(performance.now() - t);
    }
    const seen: Array<{ at: number; count: number }> = [];
    const ws = new WebSocket(`${dashboard.url.replace(/^http/, 'ws')}live`);
    ws.on('message', (data) =>
      seen.push({
        at: performance.now(),
        count: (JSON.parse(data.toString()) as { snapshot: { servers: Array<{ doc_count: number }> } }).snapshot.servers[0].doc_count,
      }),
    );
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const push: number[] = [];
    try {
      for (let k = 0; k < 5; k++) {
        await new Promise((r) => setTimeout(r, 300));
        const written = performance.now();
        await db.put(closedDoc(count + k));
        const shown = () => seen.find((s) => s.at >= written && s.count === count + k + 1);
        const deadline = written + 120_000;
        while (!shown() && performance.now() < deadline) {
          if (signal?.aborted) throw new Interrupted('page');
          await new Promise((r) => setTimeout(r, 10));
        }
        const hit = shown();
        if (!hit) throw new Error(`the status page did not push write ${k + 1} within 120 s`);
        push.push(hit.at - written);
      }
    } finally {
      ws.terminate();
    }
    return { cold, warm: median(warm), push: median(push) };
  } finally {
    await dashboard.close();
  }
}

export interface PageOptions {
  /** Documents in the big database (default 100,000; with quick 500). */
  docs: number;
  quick: boolean;
  signal?: AbortSignal;
}

export async function runPage(options: PageOptions): Promise<BenchSection> {
  const docs = options.quick ? Math.min(options.docs, 500) : options.docs;
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-page-'));
  const server = await startServerChild('bench', join(work, 'couch'), { logFile: openSync(join(work, 'server.log'), 'a') });
  try {
    progress('page', 'status page on an empty database');
    const empty = await measure(server.url, work, 'empty', 0, options.signal);
    progress('page', `status page on ${docs} documents`);
    const full = await measure(server.url, work, 'full', docs, options.signal);
    const ms = (value: number) => `${value.toFixed(0)} ms`;
    const ratio = (a: number, b: number) => `${(b / Math.max(1, a)).toFixed(1)}×`;
    const n = docs.toLocaleString('en-US');
    return {
      title: `page: the status page on ${n} documents, against an empty database`,
      command: `node dist/bench/main.js --only page --page-docs ${options.docs}${options.quick ? ' --quick' : ''}`,
      rows: [
        {
          measure: `first snapshot, every view index built (${n} docs)`,
          value: ms(full.cold),
          baseline: `${ms(empty.cold)} (0 docs)`,
          ratio: ratio(empty.cold, full.cold),
        },
        {
          measure: `warm snapshot, median of 3 (${n} docs)`,
          value: ms(full.warm),
          baseline: `${ms(empty.warm)} (0 docs)`,
          ratio: ratio(empty.warm, full.warm),
        },
        {
          measure: `one write → the WebSocket message showing it, median of 5 (${n} docs)`,
          value: ms(full.push),
          baseline: `${ms(empty.push)} (0 docs)`,
          ratio: ratio(empty.push, full.push),
        },
      ],
      notes: ['The snapshot, from which every page and every push is built, reads reduce views and lists bounded by `limit`, never every document.'],
    };
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
