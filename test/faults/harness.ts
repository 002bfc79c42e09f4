/**
 * The fault-injection harness: the simulated two-site topology (cli/topology.ts) with documents
 * arriving over time, faults injected at moments drawn from a seeded PRNG, and after every
 * round — faults healed — a bounded wait for the mesh to settle and a check of the invariants
 * (invariants.ts) on every server. Failures the faults caused are retried with `mesh retry`,
 * which must then complete them.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { documentId, ingestDirectory } from '../../agents/ingest.js';
import type { MeshConfig } from '../../config/types.js';
import { linkSignals } from '../../core/abort.js';
import { type DaqDocument, parseStatus, stepRecord } from '../../core/document.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { sleep } from '../../core/sleep.js';
import { spawnMesh } from '../../cli/processes.js';
import { writeSampleFiles } from '../../cli/simulate.js';
import { type RawSimulationConfig, type Topology, logFile, startTopology } from '../../cli/topology.js';
import { type FaultContext, injectFault } from './faults.js';
import {
  type OkRecords,
  type Snapshot,
  type Violation,
  checkDuplicates,
  checkNothingLost,
  checkOutputs,
  checkRuns,
  readEverywhere,
  readRunLog,
  rememberOk,
  runSpans,
  unsettled,
} from './invariants.js';
import { killPid, markedProcesses } from './marked.js';
import { Rig, killChild } from './rig.js';
import { FAULT_KINDS, FaultDeck, type FaultKind, planRound, random } from './schedule.js';

export interface HarnessOptions {
  seed: number;
  rounds: number;
  filesPerRound: number;
  faultsPerRound: number;
  /** Longest a fault is held before it is healed. */
  maxHoldMs: number;
  /** Longest wait for the mesh to settle after a round (and again after the retries). */
  settleMs: number;
  ssh: boolean;
  slurm: boolean;
  nats: boolean;
  /** How long every step program takes (before its work), so faults hit running steps. */
  stepSleepMs: number;
  /** Only these fault kinds (default: every kind the topology can take). */
  kinds?: readonly FaultKind[];
  keep?: boolean;
  logger: Logger;
  /** One line per event, for a human following the run. */
  say: (line: string) => void;
  signal?: AbortSignal;
}

export interface HarnessReport {
  seed: number;
  rounds: number;
  faults: Record<FaultKind, number>;
  /** Planned faults that found nothing to hit (no batch job or lyon run at that moment). */
  missed: number;
  documents: number;
  /** Documents a fault left failed, made ready again with `mesh retry`. */
  retried: number;
  /** Step executions counted in the run log. */
  runs: number;
  /** Runs kept in `duplicates[]` by the audit (cross-server double runs). */
  duplicates: number;
  violations: Violation[];
  work: string;
}

const MARKER = 'MESH_FAULT_DIR';
/** Timeouts short enough that a hung step or a dead claim is noticed within a round. */
const STEP_TIMEOUT_S = 12;
const LEASE_S = 6;

function adjust(raw: RawSimulationConfig): void {
  for (const step of raw.steps) Object.assign(step, { timeout_s: STEP_TIMEOUT_S, lease_s: LEASE_S, max_attempts: 3 });
  Object.assign(raw.agent, { sweep_s: 2, heartbeat_s: 2, retry_base_s: 1, retry_cap_s: 4, grace_s: 5 });
}

/** Runs the rounds; always stops everything it started, also on failure. */
export async function runHarness(options: HarnessOptions): Promise<HarnessReport> {
  const work = await mkdtemp(join(tmpdir(), 'mesh-faults-'));
  const switchDir = join(work, 'switches');
  await mkdir(switchDir);
  const runLog = join(work, 'runs.jsonl');
  const stepEnv = { [MARKER]: switchDir, MESH_RUN_LOG: runLog, MESH_STEP_SLEEP_MS: String(options.stepSleepMs) };
  const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn', ...stepEnv };
  const report: HarnessReport = {
    seed: options.seed,
    rounds: 0,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    missed: 0,
    documents: 0,
    retried: 0,
    runs: 0,
    duplicates: 0,
    violations: [],
    work,
  };
  const stop = new AbortController();
  const signal = linkSignals([options.signal, stop.signal]).signal;
  let topology: Topology | undefined;
  let rig: Rig | undefined;
  options.say(`seed ${options.seed} (replay: --seed ${options.seed}); work folder ${work}`);
  try {
    topology = await startTopology({
      work,
      env,
      logFile: logFile(work),
      logger: options.logger,
      ssh: options.ssh,
      slurm: options.slurm,
      nats: options.nats,
      lyonEnv: stepEnv,
      adjust,
    });
    rig = new Rig(topology, switchDir);
    const { config } = topology;
    rig.startCoordinator();
    if (!(await topology.waitForDesign(signal))) throw new Error('aborted');
    rig.startAgent();
    const kinds = (options.kinds ?? FAULT_KINDS).filter((k) => (k !== 'restart-nats' || topology?.nats) && (k !== 'kill-batch-job' || topology?.slurm));
    if (kinds.length === 0 && options.faultsPerRound > 0)
      throw new Error(
        `none of the fault kinds ${(options.kinds ?? []).join(', ')} can be injected here (restart-nats needs nats-server, kill-batch-job needs Slurm)`,
      );
    options.say(
      `topology up: ${[topology.sshd ? 'sshd (SFTP proc0, SSH-triggered lyon)' : 'local proc0 and lyon runs', topology.slurm ? 'Slurm' : 'no Slurm', topology.nats ? 'NATS' : 'no NATS'].join(', ')}; faults: ${kinds.join(', ')}`,
    );
    const rng = random(options.seed);
    const deck = new FaultDeck(rng, kinds);
    const ids: string[] = [];
    const seenOk: OkRecords = new Map();
    const programs = [
      ...new Set(
        config.steps
          .flatMap((s) => s.run ?? [])
          .filter((a) => a.endsWith('.mjs'))
          .map((a) => basename(a, '.mjs')),
      ),
    ];
    const ctx: FaultContext = {
      rig,
      marker: { name: MARKER, value: switchDir },
      programs,
      inputs: () => ids.slice(-options.filesPerRound).map((id) => id.replace(/^run_/, '')),
      signal,
    };

    for (let round = 1; round <= options.rounds && !signal.aborted; round++) {
      const plan = planRound(rng, deck, {
        faults: options.faultsPerRound,
        files: options.filesPerRound,
        activeMs: options.faultsPerRound * (options.maxHoldMs / 2 + 2000),
        maxHoldMs: options.maxHoldMs,
      });
      options.say(
        `round ${round}/${options.rounds}: ${plan.faults.map((f) => f.kind).join(', ')}; ${options.filesPerRound} files in ${plan.arrivals.length} batch(es)`,
      );
      const arrivals = (async () => {
        const started = Date.now();
        for (const arrival of plan.arrivals) {
          if (!(await sleep(Math.max(0, started + arrival.atMs - Date.now()), signal))) return;
          const first = report.documents;
          report.documents += arrival.files;
          await writeSampleFiles(config.sites.modane.storage as string, arrival.files, first);
          for (let i = first; i < first + arrival.files; i++) ids.push(documentId(`lg23b${String(Math.floor(i / 100)).padStart(3, '0')}`, i % 100));
          await ingestUntilDone(config, topology as Topology, signal);
        }
      })();
      for (const fault of plan.faults) {
        if (!(await sleep(fault.gapMs, signal))) break;
        const done = await injectFault(ctx, fault).catch((error) => `${fault.kind} went wrong: ${errorMessage(error)}`);
        if (done === undefined) {
          report.missed++;
          options.say(`  ${fault.kind}: nothing to hit`);
        } else {
          report.faults[fault.kind]++;
          options.say(`  ${fault.kind}: ${done}`);
        }
      }
      await arrivals;
      const healed = await rig.heal();
      if (healed.length > 0) options.say(`  healed: ${healed.join(', ')}`);
      report.rounds = round;
      const violations = await settleAndCheck({ config, topology, ids, seenOk, runLog, switchDir, rig, options, report, signal });
      report.violations.push(...violations.map((v) => ({ ...v, detail: `round ${round}: ${v.detail}` })));
      options.say(`  round ${round} checked: ${ids.length} documents, ${violations.length} violation(s)`);
      for (const v of violations.slice(0, 20)) options.say(`    VIOLATION ${v.invariant}: ${v.detail}`);
    }
    return report;
  } finally {
    if (rig?.coordinatorPaused) rig.coordinator?.kill('SIGCONT');
    await rig?.heal().catch(() => undefined);
    await killChild(rig?.agent, 'SIGTERM').catch(() => undefined);
    await topology?.stop().catch((error) => options.say(`stopping the topology: ${errorMessage(error)}`));
    const leftovers = await markedProcesses(MARKER, switchDir);
    for (const p of leftovers) killPid(p.pid, 'SIGKILL');
    if (leftovers.length > 0) {
      report.violations.push({
        invariant: 'process',
        detail: `${leftovers.length} process(es) outlived the topology and were killed: ${leftovers.map((p) => `${p.pid} ${p.cmdline.slice(0, 120)}`).join('; ')}`,
      });
    }
    if (!options.keep) await rm(work, { recursive: true, force: true });
  }
}

/** Catalogues the new DAQ files at modane; while modane's server is down (a fault), tries again. */
async function ingestUntilDone(config: MeshConfig, topology: Topology, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      await ingestDirectory(config.sites.modane.storage as string, {
        db: topology.ingestDb(),
        docType: config.doc_type,
        ingest: config.ingest,
        stepNames: config.steps.map((s) => s.name),
        site: 'modane',
      });
      return;
    } catch {
      await sleep(500, signal);
    }
  }
}

/** Waits until every document is final and identical on both servers; the problems left when the time is up. */
async function waitSettled(
  config: MeshConfig,
  topology: Topology,
  ids: readonly string[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ snapshot?: Snapshot; problems: string[] }> {
  const deadline = Date.now() + timeoutMs;
  let problems: string[] = ['not read yet'];
  let snapshot: Snapshot | undefined;
  while (!signal.aborted) {
    try {
      snapshot = await readEverywhere(config, (site) => topology.open(site), ids);
      problems = unsettled(config, snapshot, ids);
      if (problems.length === 0) return { snapshot, problems };
    } catch (error) {
      problems = [`cannot read: ${errorMessage(error)}`];
    }
    if (Date.now() >= deadline) break;
    await sleep(1000, signal);
  }
  return { snapshot, problems };
}

interface RoundState {
  config: MeshConfig;
  topology: Topology;
  ids: readonly string[];
  seenOk: OkRecords;
  runLog: string;
  switchDir: string;
  rig: Rig;
  options: HarnessOptions;
  report: HarnessReport;
  signal: AbortSignal;
}

async function settleAndCheck({ config, topology, ids, seenOk, runLog, switchDir, rig, options, report, signal }: RoundState): Promise<Violation[]> {
  const started = Date.now();
  let { snapshot, problems } = await waitSettled(config, topology, ids, options.settleMs, signal);
  if (problems.length > 0 || !snapshot)
    return [
      {
        invariant: 'final',
        detail: `not final and identical everywhere after ${options.settleMs} ms: ${problems.length} document(s): ${problems.slice(0, 10).join('; ')}`,
      },
    ];
  options.say(`  settled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const failed = [...(snapshot.get('modane') as Map<string, DaqDocument>).values()].filter(
    (d) =>
      parseStatus(
        d.status,
        config.steps.map((s) => s.name),
      )?.kind === 'failed',
  );
  const cleared = await rig.clearSwitches(true);
  if (cleared.length > 0) options.say(`  after the settle: ${cleared.join(', ')}`);
  if (failed.length > 0) {
    const reasons = failed.map((d) => `${d._id} ${d.status}: ${stepRecord(d, d.status.split(' ')[0])?.reason}`);
    options.say(`  ${failed.length} failed by the faults, retrying: ${reasons.slice(0, 5).join('; ')}${failed.length > 5 ? '; …' : ''}`);
    for (const doc of failed) await retry(topology, doc, signal);
    report.retried += failed.length;
    ({ snapshot, problems } = await waitSettled(config, topology, ids, options.settleMs, signal));
    if (problems.length > 0 || !snapshot) return [{ invariant: 'final', detail: `not final after the retries: ${problems.slice(0, 10).join('; ')}` }];
  }
  const violations: Violation[] = [];
  for (const [site, docs] of snapshot) {
    const notDone = [...docs.values()].filter(
      (d) =>
        parseStatus(
          d.status,
          config.steps.map((s) => s.name),
        )?.kind === 'failed',
    );
    if (notDone.length > 0)
      violations.push({
        invariant: 'final',
        detail: `${site}: ${notDone.length} document(s) still failed after mesh retry: ${notDone
          .slice(0, 5)
          .map((d) => `${d._id} ${d.status}`)
          .join(', ')}`,
      });
  }
  const modaneDocs = snapshot.get('modane') as Map<string, DaqDocument>;
  const runs = await readRunLog(runLog);
  report.runs = runSpans(runs).length;
  report.duplicates = [...modaneDocs.values()].reduce((n, d) => n + (Array.isArray(d.duplicates) ? d.duplicates.length : 0), 0);
  violations.push(...checkRuns(config, modaneDocs, runs));
  for (const docs of snapshot.values()) violations.push(...checkDuplicates(docs));
  violations.push(...checkNothingLost(config, snapshot, ids, seenOk));
  violations.push(...(await checkOutputs(config, modaneDocs)));
  const steps = (await markedProcesses(MARKER, switchDir)).filter((p) => /examples\/steps\//.test(p.cmdline));
  if (steps.length > 0)
    violations.push({
      invariant: 'process',
      detail: `step programs still running after the mesh settled: ${steps.map((p) => `${p.pid} ${p.cmdline.slice(-120)}`).join('; ')}`,
    });
  rememberOk(config, modaneDocs, seenOk);
  return violations;
}

/** `mesh retry DOC --step S`, as an operator would run it. */
async function retry(topology: Topology, doc: DaqDocument, signal: AbortSignal): Promise<void> {
  const step = doc.status.split(' ')[0];
  const child = spawnMesh(['--config', topology.configFile, 'retry', doc._id, '--step', step], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  if (code !== 0 && !signal.aborted) throw new Error(`mesh retry ${doc._id} --step ${step} exited with ${code}`);
}

/** The table printed at the end. */
export function reportTable(report: HarnessReport): string {
  const rows: Array<[string, string]> = [
    ['seed (replay with --seed)', String(report.seed)],
    ['rounds', String(report.rounds)],
    ...FAULT_KINDS.map((k): [string, string] => [`faults: ${k}`, String(report.faults[k])]),
    ['faults planned, nothing to hit', String(report.missed)],
    ['documents processed', String(report.documents)],
    ['step runs (run log)', String(report.runs)],
    ['failed by faults, then mesh retry', String(report.retried)],
    ['double runs kept in duplicates[]', String(report.duplicates)],
    ['invariant violations', String(report.violations.length)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const line = `+${'-'.repeat(width + 2)}+${'-'.repeat(10)}+`;
  return [
    line,
    ...rows.map(([k, v]) => `| ${k.padEnd(width)} | ${v.padStart(8)} |`),
    line,
    ...report.violations.map((v) => `VIOLATION ${v.invariant}: ${v.detail}`),
  ].join('\n');
}
