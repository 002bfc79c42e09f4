/**
 * Bench section "latency": in `mesh simulate`'s topology, files close one at a time and each is
 * timed from DAQ close (`date_closed`) to the start of lyon's first step (`proc1.started`),
 * with and without NATS, against the floor: one document replicated from modane's server to
 * kit's by the coordinator's own replication jobs, in the same topology.
 *
 * The hand-over to lyon is broken down from what the run leaves: the modane agent's log (run at
 * debug: the trigger's `remote run due`, and the lyon run's own first line relayed by the
 * trigger), each document's history and `batchJob` entry (claim, submission), and the creation
 * time of the job's stdout file (the batch system creates it as the job starts, just before
 * `mesh run-batch`).
 */
import { readFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../store/database.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { createLogger } from '../core/log.js';
import { heartbeatId } from '../agents/heartbeat.js';
import { type Simulation, arriveOverTime, startSimulation, waitForEverywhere } from '../cli/simulate.js';
import { type BenchRow, type BenchSection, ms, percentile, progress, ratio } from './report.js';
import { measureStartup } from './startup.js';
import { waitUntil, within } from './wait.js';

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

/** Per document, the moments (epoch ms) the breakdown is made of; NaN when the run left no trace of one. */
interface Timeline {
  closed: number;
  proc0Claimed: number;
  proc0Done: number;
  /** First seen on kit's server with proc0 done. */
  atKit: number;
  /** The modane trigger's `remote run due` for the lyon run that claimed the document. */
  fired: number;
  /** That lyon `--once` run's first log line (`batch agent started`, `agent started`), as relayed to modane. */
  onceStarted: number;
  proc1Claimed: number;
  /** Batch sites: the job that ran proc1 accepted by the batch system (the document's `batchJob` entry). */
  submitted: number;
  /** Batch sites: the job's stdout file created, as the job starts `mesh run-batch`. */
  jobStarted: number;
  proc1Started: number;
}

/** What the modane agent's log says about lyon's runs: when each was due, and when each lyon run (by its agent name) started. */
interface TriggerMoments {
  due: number[];
  started: Map<string, number>;
}

/** Reads the topology's process log (JSON lines of every process) for the trigger's lines about lyon. */
async function triggerMoments(logPath: string): Promise<TriggerMoments> {
  const due: number[] = [];
  const started = new Map<string, number>();
  for (const line of (await readFile(logPath, 'utf8')).split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { trigger?: string; msg?: string; time?: number; remote?: { agent?: string } };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.trigger !== 'lyon' || typeof entry.time !== 'number') continue;
    if (entry.msg === 'remote run due') due.push(entry.time);
    const agent = entry.remote?.agent;
    if ((entry.msg === 'batch agent started' || entry.msg === 'agent started') && agent && !started.has(agent)) started.set(agent, entry.time);
  }
  return { due: due.sort((a, b) => a - b), started };
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

/** The creation time of a file (ms), NaN when it is gone or the file system does not keep it. */
async function createdAt(path: string | undefined): Promise<number> {
  if (!path) return Number.NaN;
  const info = await stat(path).catch(() => undefined);
  return info && info.birthtimeMs > 0 ? info.birthtimeMs : Number.NaN;
}

async function timeline(doc: DaqDocument, atKit: number | undefined, trigger: TriggerMoments): Promise<Timeline> {
  const proc1 = stepRecord(doc, 'proc1');
  const queued = historyAt(doc, 'proc1 queued');
  // With Slurm the lyon agent queues the document; without, it claims it straight in progress.
  const claim = (doc.history ?? []).find((h) => (h.to === 'proc1 queued' || (h.to === 'proc1 in progress' && h.from === 'good')) && h.by.startsWith('lyon/'));
  const onceStarted = claim ? (trigger.started.get(claim.by.slice('lyon/'.length)) ?? Number.NaN) : Number.NaN;
  const fired = trigger.due.filter((t) => t <= onceStarted).at(-1) ?? Number.NaN;
  // The job that ran proc1: its submission is the last proc1 entry before the step started.
  const proc1Started = proc1?.started ? Date.parse(proc1.started) : Number.NaN;
  const job = (doc.batchJob ?? []).filter((j) => /(^|\/)proc1-[^/]*$/.test(j.stdout) && !(Date.parse(j.date) > proc1Started)).at(-1);
  return {
    closed: Date.parse(doc.date_closed),
    proc0Claimed: historyAt(doc, 'proc0 in progress'),
    proc0Done: historyAt(doc, 'good', 'proc0 in progress'),
    atKit: atKit ?? Number.NaN,
    fired,
    onceStarted,
    proc1Claimed: Number.isFinite(queued) ? queued : historyAt(doc, 'proc1 in progress', 'good'),
    submitted: job ? Date.parse(job.date) : Number.NaN,
    jobStarted: await createdAt(job?.stdout),
    proc1Started,
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
    // At debug: the trigger's `remote run due` lines are the breakdown's "trigger fired".
    simulation.startModaneAgent({ logLevel: 'debug' });
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
    const trigger = await triggerMoments(join(work, 'processes.log'));
    const timelines = await Promise.all(rows.flatMap((r) => (r.doc ? [timeline(r.doc, watcher.arrivals.get(r.id as string), trigger)] : [])));
    return { timelines, replication, services: simulation.services };
  } finally {
    interrupted?.removeEventListener('abort', onInterrupt);
    stop.abort();
    await sim?.stop();
    await rm(work, { recursive: true, force: true });
  }
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
      'proc0 done → lyon trigger fired (at modane: debounce, interval)',
      timelines.map((t) => t.fired - t.proc0Done),
    );
    stage(
      `trigger fired → lyon --once started (${services.ssh ? 'SSH connection, ' : ''}mesh start-up)`,
      timelines.map((t) => t.onceStarted - t.fired),
    );
    if (services.slurm) {
      stage(
        '--once started → job submitted (lost-job sweep, ready view, claim, job file, sbatch)',
        timelines.map((t) => t.submitted - t.onceStarted),
      );
      stage(
        'job submitted → run-batch started (Slurm scheduling, job start)',
        timelines.map((t) => t.jobStarted - t.submitted),
      );
      stage(
        'run-batch started → proc1 started (mesh start-up, read, start write)',
        timelines.map((t) => t.proc1Started - t.jobStarted),
      );
    } else
      stage(
        '--once started → proc1 started (ready view, claim)',
        timelines.map((t) => t.proc1Started - t.onceStarted),
      );
    const handOver = sorted(timelines.map((t) => t.proc1Started - t.proc0Done));
    rows.push({
      measure: `hand-over to lyon: proc0 done → proc1 started, p50 (${label})`,
      value: ms(percentile(handOver, 50)),
      baseline: `${ms(percentile(total, 50))} DAQ close → proc1 started p50`,
      ratio: ratio(percentile(handOver, 50), percentile(total, 50)),
    });
    const used = [
      services.ssh ? 'proc0 over SFTP and lyon runs over SSH (private sshd)' : 'no sshd: local copy and local lyon runs',
      services.slurm ? 'lyon steps as Slurm jobs (private cluster)' : 'no Slurm: lyon steps run directly',
      services.natsUrl ? 'NATS hints and claim registry' : 'no NATS',
    ];
    notes.push(`${label}: ${timelines.length} files, one every ${ms(arrivalMs)}; ${used.join('; ')}; replication floor over ${floor.length} probes`);
  }
  progress('latency', 'start-up of the hand-over commands against `node -e 0`');
  const startup = await measureStartup(options.quick ? 1 : 9);
  rows.push({ measure: 'breakdown, p50 / p95 of each stage:', value: '' }, ...breakdown);
  rows.push({ measure: 'one process, spawn to exit (median, interleaved):', value: '' }, ...startup);
  notes.push(
    'ratio = latency ÷ replication floor: how many single-document replications the hand-over from the DAQ to lyon costs; the hand-over row: its share of the whole path; the processes: ÷ a bare `node -e 0`',
    'a poke that finds the trigger idle starts a lyon run at once; pokes during a run (or while one waits its turn) make one more run, at least 2 s after the last (`--trigger-interval 2` in the simulation; the default is 30 s); each run is a fresh `mesh agent --once` process (plus, with Slurm, a fresh `mesh run-batch` in the job)',
    '"trigger fired" is the modane agent\'s `remote run due` (its log at debug) for the lyon run that claimed the document, "--once started" that run\'s first log line as the trigger relays it, "job submitted" the document\'s `batchJob` entry, "run-batch started" the creation of the job\'s stdout file; a negative "proc0 done → trigger fired" is a document found by a run fired earlier for other work (proc2 of the previous file)',
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
