/**
 * The scale benchmark (issue 5 §3): one embedded server (a real `mesh server` child process)
 * holding a million documents, and what the mesh does with it:
 * - `mesh status --json` (the real CLI): the first call after the data was written, which
 *   builds every view index, then several calls (p50, max), against a small database;
 * - an agent's start-up: spawn → first claim, big database against a small one, with every
 *   request it made until then (through a recording proxy) to show they are bounded;
 * - an agent (concurrency 16, a `/bin/true` step) catching up on a backlog of ready documents:
 *   its RSS at 10 %, 50 %, 100 % of the backlog and its peak;
 * - replication of that backlog to a second embedded server (a `_replicator` job), against
 *   the raw `_bulk_docs` write rate measured in the same run;
 * - the dashboard's queries (`meshStatus`) over 100,000 documents.
 *
 * `node dist/bench/scale.js [--docs N] [--backlog M] [--data DIR]`. With `--data`, the
 * generated archive is kept in DIR and reused by later runs (the backlog is rewritten).
 */
import * as files from '../store/files.js';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMeshConfig } from '../config/load.js';
import type { MeshConfig } from '../config/types.js';
import { type MeshStatus, meshStatus } from '../coordinator/status.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../store/designs.js';
import { Database } from '../store/database.js';
import { type ServerChild, spawnMesh, startServerChild, stopChild } from '../cli/processes.js';
import { archiveDoc, backlogDoc, deleteRange, writeDocs } from './scale-data.js';
import { percentile } from './report.js';
import { RecordingProxy, rssMiB, timeMesh } from './scale-probes.js';

export interface ScaleOptions {
  docs?: number;
  backlog?: number;
  /** Keep (and reuse) the generated data here; a temporary directory otherwise. */
  dataDir?: string;
  /** Documents of the database the dashboard's queries are timed on. */
  midDocs?: number;
  concurrency?: number;
  /**
   * Caps the catch-up agent's V8 heap (`--max-old-space-size`): an agent that keeps nothing per
   * document finishes the backlog inside it; one that leaks dies of it.
   */
  agentHeapMiB?: number;
  statusRuns?: number;
  log?: (line: string) => void;
}

export interface ScaleRow {
  measure: string;
  value: string;
  baseline?: string;
  ratio?: string;
}

export interface ScaleResult {
  docs: number;
  backlog: number;
  reused_data: boolean;
  write_docs_per_s: number;
  first_status_ms?: number;
  first_status_error?: string;
  /** From the first status call to a complete index (the first call itself when it succeeded). */
  index_build_ms: number;
  status_in_process_ms: { p50: number; max: number };
  /** `mesh status --help`: what the CLI costs before it asks anything. */
  cli_startup_ms: number;
  status_ms: { p50: number; max: number; runs: number };
  small_status_ms: { p50: number; max: number };
  mid: { docs: number; first_ms: number; p50_ms: number; max_ms: number };
  first_claim_ms: { big: number[]; small: number[] };
  startup_requests: { big: RequestSummary; small: RequestSummary };
  catch_up: { processed: number; seconds: number; steps_per_s: number; rss_mib: { start: number; at10: number; at50: number; at100: number; peak: number } };
  replication: { docs: number; seconds: number; docs_per_s: number };
  rows: ScaleRow[];
}

interface RequestSummary {
  requests: number;
  response_bytes: number;
  largest_bytes: number;
  largest: string;
}

const SMALL_DOCS = 1000;
const SMALL_BACKLOG = 100;
const MARKER = 'scale-data.json';

interface Marker {
  docs: number;
  backlog: number;
  mid: number;
  tag: string;
}

const fmt = (n: number, digits = 0): string => n.toFixed(digits);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A one-site mesh config for `database` on `url`: proc0 runs here (the no-op), proc1/proc2 belong to lyon. */
async function writeConfig(work: string, database: string, url: string, file: string): Promise<{ file: string; config: MeshConfig }> {
  const raw = {
    database,
    doc_type: 'daqdocument',
    sites: {
      scale: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs', database) },
      lyon: { server: url, reachable: true, long_running: false, log_dir: join(work, 'logs', 'lyon') },
    },
    ingest: { site: 'scale', quiet_s: 1 },
    steps: [
      // /bin/true: the agent's own cost and memory are measured, not a step's (a Node step costs ~60 ms of CPU, 7–20 steps/s here).
      { name: 'proc0', site: 'scale', run: ['/bin/true'], out: join(work, 'out', '{run_name}_{file_number}'), timeout_s: 120, max_attempts: 3, lease_s: 600 },
      { name: 'proc1', site: 'lyon', run: ['/bin/true'], out: join(work, 'out1', '{run_name}_{file_number}'), timeout_s: 120 },
      { name: 'proc2', site: 'lyon', run: ['/bin/true'], out: join(work, 'out2', '{run_name}_{file_number}'), timeout_s: 120 },
    ],
    agent: { sweep_s: 30, heartbeat_s: 10, retry_base_s: 1, retry_cap_s: 10, grace_s: 30 },
  };
  const path = join(work, file);
  await writeFile(path, JSON.stringify(raw, null, 2));
  return { file: path, config: parseMeshConfig(raw, path) };
}

async function readMarker(dir: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/** Fresh database with the design document, archive then backlog; returns the write rate of the whole set. */
async function generate(db: Database, config: MeshConfig, docs: number, backlog: number, tag: string, say: (line: string) => void): Promise<number> {
  await db.destroy().catch(() => undefined);
  await db.ensure();
  await pushDesign(db, designDocument(config));
  const started = performance.now();
  await writeDocs(db, docs - backlog, archiveDoc, (n, rate) => say(`  ${db.name}: ${n} archive documents written (${fmt(rate)} docs/s)`));
  await writeDocs(
    db,
    backlog,
    (i) => backlogDoc(tag, i),
    (n, rate) => say(`  ${db.name}: ${n} backlog documents written (${fmt(rate)} docs/s)`),
  );
  return docs / ((performance.now() - started) / 1000);
}

const readyCount = (db: Database) => files.readyCount(db, 'proc0', new Date().toISOString());
const doneCount = (db: Database) => files.doneCount(db, 'proc0');

/** Retries a view query until the index build it waits for is complete; the time since `startedAt`. */
async function waitForIndex(db: Database, startedAt: number): Promise<number> {
  const deadline = Date.now() + 3_600_000;
  for (;;) {
    try {
      await doneCount(db);
      return performance.now() - startedAt;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
  }
}

/** The databases of a `mesh status --json` answer. */
function statusDatabases(stdout: string): MeshStatus['databases'] {
  return (JSON.parse(stdout) as MeshStatus).databases;
}

async function statusRuns(configFile: string, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const run = await timeMesh(['--config', configFile, 'status', '--json']);
    if (run.status !== 0) throw new Error(`mesh status exited with ${run.status}: ${run.stderr.slice(-500)}`);
    // A server it could not read is timed as well as one it did: only complete answers count.
    const unread = statusDatabases(run.stdout).filter((d) => !d.reachable);
    if (unread.length > 0) throw new Error(`mesh status could not read the database: ${unread.map((d) => d.error).join('; ')}`);
    times.push(run.ms);
  }
  return times;
}

function summarise(requests: RecordingProxy['requests'], untilMs: number): RequestSummary {
  const before = requests.filter((r) => r.at_ms <= untilMs);
  const largest = before.reduce((a, b) => (b.response_bytes > a.response_bytes ? b : a), before[0] ?? { response_bytes: 0, method: '', path: '' });
  return {
    requests: before.length,
    response_bytes: before.reduce((a, r) => a + r.response_bytes, 0),
    largest_bytes: largest.response_bytes,
    largest: `${largest.method} ${decodeURIComponent(largest.path).slice(0, 160)}`,
  };
}

/** Spawns an agent through a recording proxy, waits for its first claim, stops it. */
async function firstClaim(
  work: string,
  database: string,
  serverUrl: string,
  name: string,
  logFd: number,
): Promise<{ ms: number; requests: RecordingProxy['requests'] }> {
  const proxy = new RecordingProxy(new URL(serverUrl), /proc0 in progress|proc0 queued/);
  const proxyUrl = await proxy.listen();
  const { file } = await writeConfig(work, database, proxyUrl, `${name}.json`);
  proxy.start();
  const agent = spawnMesh(['--config', file, 'agent', '--site', 'scale', '--name', name, '--concurrency', '4'], {
    env: { ...process.env, MESH_LOG_LEVEL: 'warn' },
    logFile: logFd,
  });
  try {
    const ms = await Promise.race([proxy.firstClaim, sleep(120_000).then(() => Promise.reject(new Error(`agent ${name} made no claim within 120 s`)))]);
    return { ms, requests: proxy.requests };
  } finally {
    await stopChild(agent);
    await proxy.close();
  }
}

async function catchUp(
  work: string,
  db: Database,
  serverUrl: string,
  concurrency: number,
  heapMiB: number | undefined,
  logFd: number,
  say: (line: string) => void,
): Promise<ScaleResult['catch_up']> {
  const { file } = await writeConfig(work, db.name, serverUrl, 'catch-up.json');
  const target = await readyCount(db);
  const base = await doneCount(db);
  const started = performance.now();
  const heap = heapMiB === undefined ? {} : { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=${heapMiB}`.trim() };
  const agent = spawnMesh(['--config', file, 'agent', '--site', 'scale', '--name', `catch-up-${Date.now()}`, '--concurrency', String(concurrency)], {
    env: { ...process.env, MESH_LOG_LEVEL: 'warn', ...heap },
    logFile: logFd,
  });
  const pid = agent.pid as number;
  const rss = { start: 0, at10: 0, at50: 0, at100: 0, peak: 0 };
  let processed = 0;
  let lastProgress = performance.now();
  let lastSay = performance.now();
  try {
    await sleep(1000);
    rss.start = (await rssMiB(pid)) ?? 0;
    while (processed < target) {
      if (agent.exitCode !== null) throw new Error(`the agent exited with status ${agent.exitCode} after ${processed} of ${target} documents`);
      await sleep(1000);
      const now = (await doneCount(db)) - base;
      const mib = (await rssMiB(pid)) ?? 0;
      rss.peak = Math.max(rss.peak, mib);
      if (now > processed) lastProgress = performance.now();
      processed = now;
      if (!rss.at10 && processed >= target * 0.1) rss.at10 = mib;
      if (!rss.at50 && processed >= target * 0.5) rss.at50 = mib;
      if (performance.now() - lastSay > 15_000) {
        lastSay = performance.now();
        say(`  catch-up: ${processed}/${target} (${fmt(processed / ((performance.now() - started) / 1000), 1)} steps/s), agent RSS ${fmt(mib)} MiB`);
      }
      if (performance.now() - lastProgress > 180_000) throw new Error(`no progress for 3 minutes at ${processed} of ${target}`);
    }
    rss.at100 = (await rssMiB(pid)) ?? 0;
    rss.peak = Math.max(rss.peak, (await rssMiB(pid, 'VmHWM')) ?? 0);
  } finally {
    await stopChild(agent);
  }
  const seconds = (performance.now() - started) / 1000;
  return { processed, seconds, steps_per_s: processed / seconds, rss_mib: rss };
}

/** A `_replicator` job on the second server pulling the changes after `since` (the backlog) from the first. */
async function replicateBacklog(
  source: ServerChild,
  target: ServerChild,
  database: string,
  config: MeshConfig,
  since: number | string,
): Promise<ScaleResult['replication']> {
  const targetDb = new Database({ url: target.url, database });
  await targetDb.ensure();
  await pushDesign(targetDb, designDocument(config));
  const replicator = new Database({ url: target.url, database: '_replicator' });
  await replicator.ensure();
  const started = performance.now();
  await replicator.put({ _id: 'scale-backlog', source: `${source.url}/${database}`, target: `${target.url}/${database}`, since, batch_size: 500 });
  const deadline = Date.now() + 3_600_000;
  for (;;) {
    const job = await replicator.get<{ _replication_state?: string; _replication_stats?: { docs_written?: number }; _replication_state_reason?: string }>(
      'scale-backlog',
    );
    if (job?._replication_state === 'completed') {
      const seconds = (performance.now() - started) / 1000;
      const docs = job._replication_stats?.docs_written ?? 0;
      return { docs, seconds, docs_per_s: docs / seconds };
    }
    if (job?._replication_state === 'error') throw new Error(`replication failed: ${job._replication_state_reason ?? 'no reason given'}`);
    if (Date.now() > deadline) throw new Error('replication did not complete within an hour');
    await sleep(250);
  }
}

export async function runScale(options: ScaleOptions = {}): Promise<ScaleResult> {
  const docs = options.docs ?? 1_000_000;
  const backlog = options.backlog ?? 100_000;
  const midDocs = options.midDocs ?? 100_000;
  const concurrency = options.concurrency ?? 16;
  const runs = options.statusRuns ?? 5;
  const say = options.log ?? ((line: string) => console.log(line));
  if (!Number.isInteger(docs) || !Number.isInteger(backlog) || backlog < 1 || backlog > docs)
    throw new Error(`--backlog (${backlog}) must be an integer between 1 and --docs (${docs})`);

  const work = await mkdtemp(join(tmpdir(), 'mesh-scale-'));
  const dataDir = resolve(options.dataDir ?? join(work, 'data'));
  await mkdir(dataDir, { recursive: true });
  const logFd = openSync(join(work, 'scale.log'), 'a');
  say(
    `scale benchmark: ${docs} documents, backlog ${backlog}, data in ${options.dataDir ? dataDir : 'a temporary directory'}; logs in ${join(work, 'scale.log')}`,
  );
  const server = await startServerChild('scale', join(dataDir, 'server'), { logFile: logFd });
  let second: ServerChild | undefined;
  try {
    const big = await writeConfig(work, 'scale', server.url, 'scale.json');
    const small = await writeConfig(work, 'scale_small', server.url, 'scale-small.json');
    const mid = await writeConfig(work, 'scale_mid', server.url, 'scale-mid.json');
    const db = new Database({ url: server.url, database: 'scale' });
    const smallDb = new Database({ url: server.url, database: 'scale_small' });
    const midDb = new Database({ url: server.url, database: 'scale_mid' });

    // 1. The data set, or the kept one with a fresh backlog.
    const marker = await readMarker(dataDir);
    const reused = marker !== undefined && marker.docs === docs && marker.backlog === backlog && marker.mid === midDocs;
    const tag = Date.now().toString(36);
    let writeRate: number;
    let since: number | string;
    if (reused) {
      say(`reusing the data set in ${dataDir} (generated earlier: ${docs - backlog} archive documents); rewriting the backlog`);
      const removed = await deleteRange(db, `bk${marker.tag}_`, `bk${marker.tag}_\ufff0`);
      await deleteRange(smallDb, `bk${marker.tag}_`, `bk${marker.tag}_\ufff0`);
      say(`  deleted the previous backlog (${removed} documents)`);
      since = (await db.info()).update_seq;
      const started = performance.now();
      await writeDocs(
        db,
        backlog,
        (i) => backlogDoc(tag, i),
        (n, rate) => say(`  scale: ${n} backlog documents written (${fmt(rate)} docs/s)`),
      );
      writeRate = backlog / ((performance.now() - started) / 1000);
      await writeDocs(
        smallDb,
        SMALL_BACKLOG,
        (i) => backlogDoc(tag, i),
        () => undefined,
      );
    } else {
      say('generating the data set');
      await rm(join(dataDir, MARKER), { force: true });
      await generate(smallDb, small.config, SMALL_DOCS, SMALL_BACKLOG, tag, say);
      if (midDocs > 0) await generate(midDb, mid.config, midDocs, Math.round(midDocs / 10), tag, say);
      await db.destroy().catch(() => undefined);
      await db.ensure();
      await pushDesign(db, designDocument(big.config));
      const started = performance.now();
      await writeDocs(db, docs - backlog, archiveDoc, (n, rate) => say(`  scale: ${n} archive documents written (${fmt(rate)} docs/s)`));
      since = (await db.info()).update_seq;
      await writeDocs(
        db,
        backlog,
        (i) => backlogDoc(tag, i),
        (n, rate) => say(`  scale: ${n} backlog documents written (${fmt(rate)} docs/s)`),
      );
      writeRate = docs / ((performance.now() - started) / 1000);
    }
    await writeFile(join(dataDir, MARKER), JSON.stringify({ docs, backlog, mid: midDocs, tag } satisfies Marker));
    say(`raw _bulk_docs write rate: ${fmt(writeRate)} docs/s`);

    // 2. mesh status: the first call (index build unless reused), then steady state, against a small database.
    say(
      `mesh status --json, first call after the writes${reused ? ' (the index exists: only the new backlog is indexed)' : ' (builds every view index of _design/mesh)'} …`,
    );
    const first = await timeMesh(['--config', big.file, 'status', '--json']);
    // mesh status exits 0 with a server it could not read (reachable: false and the reason): also a failed first call.
    const firstAnswer = first.status === 0 ? statusDatabases(first.stdout)[0] : undefined;
    const firstError =
      first.status !== 0
        ? `exit ${first.status}: ${first.stderr.trim().split('\n').pop() ?? ''}`
        : firstAnswer?.reachable === false
          ? (firstAnswer.error ?? 'unreachable')
          : undefined;
    say(`  first call: ${fmt(first.ms)} ms${firstError ? ` (failed: ${firstError})` : ''}`);
    let indexMs = first.ms;
    if (firstError) {
      // The CLI gave up (it waits server_timeout_s, 60 s by default, for an answer); the server keeps building.
      indexMs = await waitForIndex(db, performance.now() - first.ms);
      say(`  the index build completed ${fmt(indexMs)} ms after the first call started`);
    }
    const docCount = firstError ? undefined : firstAnswer?.doc_count;
    if (docCount !== undefined && docCount < docs) throw new Error(`mesh status counted ${docCount} documents, expected ${docs}`);
    const steady = await statusRuns(big.file, runs);
    const startupTimes: number[] = [];
    for (let i = 0; i < runs; i++) startupTimes.push((await timeMesh(['--config', big.file, 'status', '--help'])).ms);
    await statusRuns(small.file, 1);
    const smallTimes = await statusRuns(small.file, runs);
    const inProcess: number[] = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      await meshStatus(big.config, () => new Database({ url: server.url, database: 'scale' }));
      inProcess.push(performance.now() - started);
    }
    say(`  meshStatus in process (the queries without the CLI's start-up): p50 ${fmt(percentile(inProcess, 50))} ms, max ${fmt(Math.max(...inProcess))} ms`);
    say(
      `  ${runs} more calls: p50 ${fmt(percentile(steady, 50))} ms, max ${fmt(Math.max(...steady))} ms; small database (${SMALL_DOCS} docs): p50 ${fmt(percentile(smallTimes, 50))} ms`,
    );

    // 3. The dashboard's queries over the mid-size database, in process.
    const midTimes: number[] = [];
    let midFirst = 0;
    if (midDocs > 0) {
      const open = () => new Database({ url: server.url, database: 'scale_mid' });
      for (let i = 0; i <= runs; i++) {
        const started = performance.now();
        await meshStatus(mid.config, open);
        if (i === 0) midFirst = performance.now() - started;
        else midTimes.push(performance.now() - started);
      }
      say(
        `meshStatus over ${midDocs} documents: first ${fmt(midFirst)} ms${reused ? '' : ' (index build)'}, then p50 ${fmt(percentile(midTimes, 50))} ms, max ${fmt(Math.max(...midTimes))} ms`,
      );
    }

    // 4. Agent start-up → first claim, small database then big one, requests recorded.
    const claims = { big: [] as number[], small: [] as number[] };
    const startup = {} as ScaleResult['startup_requests'];
    for (const [which, name] of [
      ['small', 'scale_small'],
      ['big', 'scale'],
      ['small', 'scale_small'],
      ['big', 'scale'],
      ['small', 'scale_small'],
      ['big', 'scale'],
    ] as const) {
      const run = await firstClaim(work, name, server.url, `startup-${which}-${Date.now()}`, logFd);
      claims[which].push(run.ms);
      startup[which] = summarise(run.requests, run.ms);
    }
    const claimRatio = percentile(claims.big, 50) / percentile(claims.small, 50);
    say(
      `agent start → first claim: ${docs} docs ${claims.big.map((m) => fmt(m)).join(', ')} ms; ${SMALL_DOCS} docs ${claims.small.map((m) => fmt(m)).join(', ')} ms; ratio of medians ${fmt(claimRatio, 2)}`,
    );
    say(
      `  requests until the first claim: big ${startup.big.requests} (${startup.big.response_bytes} bytes, largest ${startup.big.largest_bytes}: ${startup.big.largest}); small ${startup.small.requests} (${startup.small.response_bytes} bytes)`,
    );

    // 5. Catching up on the backlog.
    say(
      `agent (concurrency ${concurrency}, /bin/true step${options.agentHeapMiB ? `, V8 heap capped at ${options.agentHeapMiB} MiB` : ''}) catching up on the backlog …`,
    );
    const caught = await catchUp(work, db, server.url, concurrency, options.agentHeapMiB, logFd, say);
    say(
      `  ${caught.processed} steps in ${fmt(caught.seconds)} s (${fmt(caught.steps_per_s, 1)} steps/s); RSS MiB start ${fmt(caught.rss_mib.start)}, 10% ${fmt(caught.rss_mib.at10)}, 50% ${fmt(caught.rss_mib.at50)}, 100% ${fmt(caught.rss_mib.at100)}, peak ${fmt(caught.rss_mib.peak)}`,
    );

    // 6. Replication of the backlog to a second server.
    second = await startServerChild('scale-b', join(work, 'second'), { logFile: logFd });
    say('replicating the backlog to a second embedded server (_replicator job) …');
    const replication = await replicateBacklog(server, second, 'scale', big.config, since);
    say(`  ${replication.docs} documents in ${fmt(replication.seconds, 1)} s (${fmt(replication.docs_per_s)} docs/s)`);

    const rows: ScaleRow[] = [
      { measure: `_bulk_docs write rate (${reused ? 'backlog' : 'whole data set'})`, value: `${fmt(writeRate)} docs/s` },
      {
        measure: `mesh status --json, first call after the writes (${reused ? 'indexes the new backlog' : `builds the view index of ${docs} docs`})`,
        value: firstError ? `failed after ${fmt(first.ms)} ms (${firstError}); index built in ${fmt(indexMs)} ms` : `${fmt(first.ms)} ms`,
      },
      {
        measure: `meshStatus queries in process, ${docs} docs (p50 / max of ${runs})`,
        value: `${fmt(percentile(inProcess, 50))} / ${fmt(Math.max(...inProcess))} ms`,
      },
      { measure: 'mesh status --help (the CLI start-up alone, p50)', value: `${fmt(percentile(startupTimes, 50))} ms` },
      {
        measure: `mesh status --json, ${docs} docs (p50 / max of ${runs})`,
        value: `${fmt(percentile(steady, 50))} / ${fmt(Math.max(...steady))} ms`,
        baseline: `${fmt(percentile(smallTimes, 50))} ms with ${SMALL_DOCS} docs`,
        ratio: fmt(percentile(steady, 50) / percentile(smallTimes, 50), 2),
      },
      ...(midDocs > 0
        ? [
            {
              measure: `dashboard queries (meshStatus) over ${midDocs} docs (p50 / max of ${runs}; first ${fmt(midFirst)} ms)`,
              value: `${fmt(percentile(midTimes, 50))} / ${fmt(Math.max(...midTimes))} ms`,
            },
          ]
        : []),
      {
        measure: `agent start → first claim, ${docs} docs (median of ${claims.big.length})`,
        value: `${fmt(percentile(claims.big, 50))} ms`,
        baseline: `${fmt(percentile(claims.small, 50))} ms with ${SMALL_DOCS} docs`,
        ratio: fmt(claimRatio, 2),
      },
      {
        measure: 'requests until the first claim (answer bytes)',
        value: `${startup.big.requests} (${startup.big.response_bytes} B)`,
        baseline: `${startup.small.requests} (${startup.small.response_bytes} B)`,
        ratio: fmt(startup.big.response_bytes / Math.max(1, startup.small.response_bytes), 2),
      },
      {
        measure: `agent catch-up on ${caught.processed} ready docs, concurrency ${concurrency}`,
        value: `${fmt(caught.seconds)} s, ${fmt(caught.steps_per_s, 1)} steps/s`,
      },
      {
        measure: 'agent RSS at 10% / 50% / 100% of the backlog (peak)',
        value: `${fmt(caught.rss_mib.at10)} / ${fmt(caught.rss_mib.at50)} / ${fmt(caught.rss_mib.at100)} MiB (${fmt(caught.rss_mib.peak)})`,
        baseline: `${fmt(caught.rss_mib.start)} MiB at start`,
        ratio: fmt(caught.rss_mib.at100 / Math.max(1, caught.rss_mib.at10), 2),
      },
      {
        measure: `replication of the backlog to a second server (${replication.docs} docs)`,
        value: `${fmt(replication.seconds, 1)} s, ${fmt(replication.docs_per_s)} docs/s`,
        baseline: `${fmt(writeRate)} docs/s raw writes`,
        ratio: fmt(replication.docs_per_s / writeRate, 2),
      },
    ];
    return {
      docs,
      backlog,
      reused_data: reused,
      write_docs_per_s: writeRate,
      first_status_ms: firstError ? undefined : first.ms,
      first_status_error: firstError,
      index_build_ms: indexMs,
      status_in_process_ms: { p50: percentile(inProcess, 50), max: Math.max(...inProcess) },
      cli_startup_ms: percentile(startupTimes, 50),
      status_ms: { p50: percentile(steady, 50), max: Math.max(...steady), runs },
      small_status_ms: { p50: percentile(smallTimes, 50), max: Math.max(...smallTimes) },
      mid: { docs: midDocs, first_ms: midFirst, p50_ms: midTimes.length ? percentile(midTimes, 50) : 0, max_ms: midTimes.length ? Math.max(...midTimes) : 0 },
      first_claim_ms: claims,
      startup_requests: startup,
      catch_up: caught,
      replication,
      rows,
    };
  } finally {
    await second?.stop();
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

function printTable(rows: ScaleRow[]): void {
  const head: ScaleRow = { measure: 'measure', value: 'value', baseline: 'baseline', ratio: 'ratio' };
  const all = [head, ...rows];
  const width = (k: keyof ScaleRow) => Math.max(...all.map((r) => (r[k] ?? '').length));
  for (const r of all)
    console.log([r.measure.padEnd(width('measure')), r.value.padEnd(width('value')), (r.baseline ?? '').padEnd(width('baseline')), r.ratio ?? ''].join(' | '));
}

function parseArgs(argv: string[]): ScaleOptions {
  const options: ScaleOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const count = (): number => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} takes a whole number, not ${JSON.stringify(value)}`);
      i++;
      return n;
    };
    if (flag === '--docs') options.docs = count();
    else if (flag === '--backlog') options.backlog = count();
    else if (flag === '--mid') options.midDocs = count();
    else if (flag === '--concurrency') options.concurrency = count();
    else if (flag === '--agent-heap-mb') options.agentHeapMiB = count();
    else if (flag === '--data') {
      if (!value) throw new Error('--data takes a directory');
      options.dataDir = value;
      i++;
    } else if (flag === '--help' || flag === '-h') {
      console.log(
        'usage: node dist/bench/scale.js [--docs N (1000000)] [--backlog M (100000)] [--mid K (100000, 0 to skip)] [--concurrency C (16)] [--agent-heap-mb M (no cap)] [--data DIR (kept and reused)]',
      );
      process.exit(0);
    } else throw new Error(`unknown option ${flag} (see --help)`);
  }
  return options;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const result = await runScale(parseArgs(process.argv.slice(2)));
    console.log('');
    printTable(result.rows);
  } catch (error) {
    console.error(`scale benchmark failed: ${(error as Error).message}`);
    process.exitCode = 1;
  }
}
