/**
 * Bench section "latency": in `mesh simulate`'s topology, files close one at a time and each is
 * timed from DAQ close (`date_closed`) to the start of lyon's first step (`proc1.started`),
 * with and without NATS, against the floor: one document replicated from modane's server to
 * kit's by the coordinator's own replication jobs, in the same topology.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Database } from '../store/database.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { createLogger } from '../core/log.js';
import { heartbeatId } from '../agents/heartbeat.js';
import { MESH_MAIN } from '../cli/processes.js';
import { type Simulation, arriveOverTime, startSimulation, waitForEverywhere } from '../cli/simulate.js';
import { type BenchRow, type BenchSection, median, ms, percentile, progress, ratio } from './report.js';
import { waitUntil, within } from './wait.js';

const run = promisify(execFile);

export interface LatencyOptions {
  /** One file per variant, no Slurm (its start and stop take seconds): shows the section works. */
  quick: boolean;
  /** Files per variant. */
  files?: number;
  /** Milliseconds between two files closing: long enough that each meets an idle pipeline. */
  arrivalMs?: number;
  signal?: AbortSignal;
}

interface Variant {
  name: string;
  nats: boolean;
}

/** Per document, the moments (epoch ms) the breakdown is made of. */
interface Timeline {
  closed: number;
  proc0Claimed: number;
  proc0Done: number;
  /** First seen on kit's server with proc0 done. */
  atKit: number;
  proc1Claimed: number;
  proc1Started: number;
}

const PROBE_TYPE = 'mesh-bench-probe';

/** Sorted ascending, NaN dropped. */
function sorted(values: number[]): number[] {
  return values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
}

const p50p95 = (values: number[]) => {
  const s = sorted(values);
  return `${ms(percentile(s, 50))} / ${ms(percentile(s, 95))}`;
};

/**
 * One document at a time written on modane's server, timed until kit's changes feed shows it
 * (a longpoll opened before the write): the replication floor of every cross-site hand-over.
 */
async function replicationLatencies(modane: Database, kit: Database, count: number, tag: string): Promise<number[]> {
  const latencies: number[] = [];
  // The first one also waits for the coordinator's jobs to be running: not counted.
  for (let i = -1; i < count; i++) {
    const id = `bench-probe-${tag}-${i + 1}`;
    const since = (await kit.info()).update_seq;
    const seen = kit.changes(since, { _id: id }, { timeoutMs: 60_000 });
    const written = performance.now();
    await modane.put({ _id: id, type: PROBE_TYPE, at: new Date().toISOString() });
    const result = await within(seen, 90_000, `probe ${id} on kit`);
    if (!result.results.some((r) => r.id === id)) throw new Error(`probe ${id} written on modane did not reach kit within 60 s: is replication running?`);
    if (i >= 0) latencies.push(performance.now() - written);
    await new Promise((r) => setTimeout(r, 50));
  }
  return latencies;
}

/** Waits for the agent's first heartbeat, so that the first file does not pay for the agent's start. */
async function agentRunning(db: Database, site: string, agent: string, signal: AbortSignal): Promise<void> {
  await waitUntil(`the first heartbeat of agent ${site}/${agent}`, async () => Boolean(await db.get(heartbeatId(site, agent))), { timeoutMs: 60_000, signal });
}

/** Follows kit's changes feed and notes when each document first arrives there with proc0 done. */
function watchArrivals(kit: Database, signal: AbortSignal): { arrivals: Map<string, number>; done: Promise<unknown> } {
  const arrivals = new Map<string, number>();
  // Never rejects (nobody may be awaiting it yet): the error is handed over when awaited.
  const done = (async () => {
    let since: string | number = (await kit.info()).update_seq;
    while (!signal.aborted) {
      const result = await kit.changes<DaqDocument>(since, { 'proc0.ok': true }, { timeoutMs: 10_000, includeDocs: true, signal }).catch((error) => {
        if (signal.aborted) return undefined;
        throw error;
      });
      if (!result) return;
      const now = Date.now();
      for (const change of result.results) if (!arrivals.has(change.id)) arrivals.set(change.id, now);
      since = result.last_seq;
    }
  })().then(
    () => undefined,
    (error: unknown) => error,
  );
  return { arrivals, done };
}

function historyAt(doc: DaqDocument, to: string, from?: string): number {
  const entry = (doc.history ?? []).find((h) => h.to === to && (from === undefined || h.from === from));
  return entry ? Date.parse(entry.at) : Number.NaN;
}

function timeline(doc: DaqDocument, atKit: number | undefined): Timeline {
  const proc1 = stepRecord(doc, 'proc1');
  const queued = historyAt(doc, 'proc1 queued');
  return {
    closed: Date.parse(doc.date_closed),
    proc0Claimed: historyAt(doc, 'proc0 in progress'),
    proc0Done: historyAt(doc, 'good', 'proc0 in progress'),
    atKit: atKit ?? Number.NaN,
    // With Slurm the lyon agent queues the document; without, it claims it straight in progress.
    proc1Claimed: Number.isFinite(queued) ? queued : historyAt(doc, 'proc1 in progress', 'good'),
    proc1Started: proc1?.started ? Date.parse(proc1.started) : Number.NaN,
  };
}

async function runVariant(
  variant: Variant,
  files: number,
  arrivalMs: number,
  probes: number,
  slurm: boolean,
  interrupted?: AbortSignal,
): Promise<{ timelines: Timeline[]; replication: number[]; services: Simulation['services'] }> {
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-latency-'));
  const logger = createLogger({ level: 'warn', pretty: false }).child({ bench: `latency-${variant.name}` });
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  interrupted?.addEventListener('abort', onInterrupt, { once: true });
  let sim: Simulation | undefined;
  try {
    progress('latency', `${variant.name}: starting the topology (servers, sshd${slurm ? ', Slurm' : ''}${variant.nats ? ', NATS' : ''}, coordinator)`);
    const simulation = await startSimulation(work, { ssh: true, slurm, nats: variant.nats }, logger, stop.signal);
    sim = simulation;
    const modane = simulation.open('modane');
    const kit = simulation.open('kit');
    progress('latency', `${variant.name}: replication floor, ${probes} documents modane → kit one at a time`);
    const replication = await replicationLatencies(modane, kit, probes, variant.name);
    const watcher = watchArrivals(kit, stop.signal);
    simulation.startModaneAgent();
    await agentRunning(modane, 'modane', 'modane-1', stop.signal);
    const storage = simulation.config.sites.modane.storage as string;
    let arrived = 0;
    const catalogue = async () => {
      await simulation.ingest(stop.signal);
      progress('latency', `${variant.name}: file ${++arrived}/${files} closed`);
    };
    await arriveOverTime(storage, files, arrivalMs, catalogue, stop.signal);
    progress('latency', `${variant.name}: waiting for every file to finish on both servers`);
    await waitForEverywhere(simulation.config, simulation.open, files, logger, stop.signal);
    progress('latency', `${variant.name}: stopping the topology`);
    stop.abort();
    const failure = await watcher.done;
    if (failure) throw new Error(`following kit's changes feed failed: ${String(failure)}`);
    const { rows } = await kit.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' });
    const timelines = rows.flatMap((r) => (r.doc ? [timeline(r.doc, watcher.arrivals.get(r.id as string))] : []));
    return { timelines, replication, services: simulation.services };
  } finally {
    interrupted?.removeEventListener('abort', onInterrupt);
    stop.abort();
    await sim?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** A `mesh` process from spawn to exit doing nothing: what every lyon run and batch job pays at least once. */
async function meshStartup(times: number): Promise<number> {
  const seconds: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    await run(process.execPath, [MESH_MAIN, '--help']);
    seconds.push(performance.now() - started);
  }
  return median(seconds);
}

export async function runLatency(options: LatencyOptions): Promise<BenchSection> {
  const files = options.files ?? (options.quick ? 1 : 10);
  const arrivalMs = options.arrivalMs ?? (options.quick ? 3000 : 6000);
  const probes = options.quick ? 3 : 30;
  const rows: BenchRow[] = [];
  const breakdown: BenchRow[] = [];
  const notes: string[] = [];
  for (const variant of [
    { name: 'CouchDB only', nats: false },
    { name: 'with NATS', nats: true },
  ]) {
    const { timelines, replication, services } = await runVariant(variant, files, arrivalMs, probes, !options.quick, options.signal);
    const floor = sorted(replication);
    const total = sorted(timelines.map((t) => t.proc1Started - t.closed));
    const label = variant.name;
    rows.push({
      measure: `DAQ close → lyon proc1 started, p50 (${label})`,
      value: ms(percentile(total, 50)),
      baseline: `${ms(percentile(floor, 50))} replication p50`,
      ratio: ratio(percentile(total, 50), percentile(floor, 50)),
    });
    rows.push({
      measure: `DAQ close → lyon proc1 started, p95 (${label})`,
      value: ms(percentile(total, 95)),
      baseline: `${ms(percentile(floor, 95))} replication p95`,
      ratio: ratio(percentile(total, 95), percentile(floor, 95)),
    });
    const stage = (name: string, values: number[]) => breakdown.push({ measure: `  ${label}: ${name}`, value: p50p95(values) });
    stage(
      'closed → proc0 claimed at modane (changes feed)',
      timelines.map((t) => t.proc0Claimed - t.closed),
    );
    stage(
      `proc0 claimed → done (${services.ssh ? 'SFTP transfer + remote sha256sum' : 'local copy'})`,
      timelines.map((t) => t.proc0Done - t.proc0Claimed),
    );
    stage(
      'proc0 done → on kit (replication)',
      timelines.map((t) => t.atKit - t.proc0Done),
    );
    stage(
      `on kit → proc1 claimed by lyon (trigger debounce, ${services.ssh ? 'SSH, ' : ''}agent start)`,
      timelines.map((t) => t.proc1Claimed - t.atKit),
    );
    if (services.slurm)
      stage(
        'proc1 queued → started (Slurm scheduling, job start)',
        timelines.map((t) => t.proc1Started - t.proc1Claimed),
      );
    const used = [
      services.ssh ? 'proc0 over SFTP and lyon runs over SSH (private sshd)' : 'no sshd: local copy and local lyon runs',
      services.slurm ? 'lyon steps as Slurm jobs (private cluster)' : 'no Slurm: lyon steps run directly',
      services.natsUrl ? 'NATS hints and claim registry' : 'no NATS',
    ];
    notes.push(`${label}: ${timelines.length} files, one every ${ms(arrivalMs)}; ${used.join('; ')}; replication floor over ${floor.length} probes`);
  }
  const startup = await meshStartup(options.quick ? 1 : 3);
  rows.push({ measure: 'breakdown, p50 / p95 of each stage:', value: '' }, ...breakdown);
  rows.push({ measure: 'one `mesh --help` process, spawn to exit (median)', value: ms(startup) });
  notes.push(
    'ratio = latency ÷ replication floor: how many single-document replications the hand-over from the DAQ to lyon costs',
    'the trigger collects pokes for 1 s, starts lyon runs at least 2 s apart (`--trigger-interval 2` in the simulation; the default is 30 s) and one run at a time; each run is a fresh `mesh agent --once` process (plus, with Slurm, a fresh `mesh run-batch` in the job)',
    'date_closed is set when ingest catalogues a file; here each file is catalogued the moment it closes. `mesh ingest --watch --interval S` adds 0 to S seconds before that, not counted here',
    'NATS cannot wake lyon (no process lives there to subscribe): its hints only help long-running agents',
  );
  return {
    title: 'latency: DAQ close → lyon step started in `mesh simulate`, vs one document replicated modane → kit',
    command: `node dist/bench/main.js --only latency${options.quick ? ' --quick' : ''}`,
    rows,
    notes,
  };
}
