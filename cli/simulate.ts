import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type IngestReport, ingestDirectory } from '../agents/ingest.js';
import { type PurgeSummary, purgeDaqBuffer } from '../agents/purge.js';
import { purgeableBytes } from '../store/custody.js';
import type { LogLevel } from '../config/log-level.js';
import type { MeshConfig } from '../config/types.js';
import { type MeshStatus, meshStatus } from '../coordinator/status.js';
import { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { isComplete } from '../core/state.js';
import { runCounts } from '../store/runs.js';
import { freePort } from './local/ports.js';
import type { SimulationServices } from './simulation-config.js';
import { type TopologyOptions, logFile, startTopology, untilReady } from './topology.js';

/** Sample DAQ file number `index` (4 KiB of random bytes) and the `.closed` marker a DAQ writes when it is done with it. */
async function writeSampleFile(dir: string, index: number): Promise<void> {
  const run = `lg23b${String(Math.floor(index / 100)).padStart(3, '0')}`;
  const file = join(dir, run, `${run}_${String(index % 100).padStart(3, '0')}`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, randomBytes(4096));
  await writeFile(`${file}.closed`, '');
}

/** After a run's last sample file (every 100th, or the last of all): the DAQ's `<run>.closed` marker, which closes the run for its run steps. */
async function closeRunAfter(dir: string, index: number, last: number): Promise<void> {
  if (index % 100 === 99 || index === last) await writeFile(join(dir, `lg23b${String(Math.floor(index / 100)).padStart(3, '0')}.closed`), '');
}

/** Sample DAQ files numbered from `first`, each with its `.closed` marker. */
export async function writeSampleFiles(dir: string, count: number, first = 0): Promise<void> {
  for (let i = first; i < first + count; i++) {
    await writeSampleFile(dir, i);
    await closeRunAfter(dir, i, first + count - 1);
  }
}

/**
 * The DAQ at work: sample files close one at a time, `everyMs` apart, and each is catalogued
 * as soon as it is closed, so every file meets an idle pipeline (latency, not queueing).
 * Returns false when aborted.
 */
export async function arriveOverTime(dir: string, count: number, everyMs: number, catalogue: () => Promise<unknown>, signal?: AbortSignal): Promise<boolean> {
  for (let i = 0; i < count; i++) {
    if (i > 0 && !(await sleep(everyMs, signal))) return false;
    await writeSampleFile(dir, i);
    await closeRunAfter(dir, i, count - 1);
    await catalogue();
  }
  return !signal?.aborted;
}

/** Documents complete on every server, with the same winning revision everywhere. */
async function completeEverywhere(config: MeshConfig, dbs: Database[], files: number): Promise<boolean> {
  const revisions: Array<Map<string, string>> = [];
  for (const db of dbs) {
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0', conflicts: true });
    const done = rows.filter((r) => r.doc && isComplete(r.doc, config) && !r.doc._conflicts);
    if (done.length < files) return false;
    // With run steps, every run of the sample files archived too (100 files a run).
    if ((config.run_steps ?? []).length > 0 && (await runCounts(db)).done < Math.ceil(files / 100)) return false;
    revisions.push(new Map(done.map((r) => [r.id as string, r.doc?._rev as string])));
  }
  return revisions.every((m) => [...m].every(([id, rev]) => revisions[0].get(id) === rev));
}

function progressLine(config: MeshConfig, status: MeshStatus, files: number): string {
  return status.databases
    .map((db) =>
      db.reachable
        ? `${db.site}: ${config.steps.map((s) => `${s.name} ${db.steps[s.name]?.done ?? 0}/${files}`).join(' ')}`
        : `${db.site}: ${db.not_authorised ? db.error : 'unreachable'}`,
    )
    .join(' | ');
}

/** How long `mesh simulate` waits for anything to move before it gives up (without --stay or --wait-on-failure). */
export const NO_PROGRESS_MS = 120_000;

export interface WaitOptions {
  /** A failed step does not end the wait (an operator may retry it from the status page or with `mesh retry`). */
  waitOnFailure?: boolean;
  /** Nothing ends the wait but `signal` or every file done: no progress is logged (once per window), never fatal. */
  stay?: boolean;
  /** How long nothing may move (default NO_PROGRESS_MS). */
  noProgressMs?: number;
}

/**
 * Shows progress per server and step until every file is done everywhere. Without `stay` or
 * `waitOnFailure` it fails when nothing moves for `noProgressMs`, and (without `waitOnFailure`)
 * at the first failed step; with either it waits, logging each window without progress, until
 * `signal` aborts: the servers and the status page stay up for whoever is looking at them.
 */
export async function waitForEverywhere(
  config: MeshConfig,
  open: (site: string) => Database,
  files: number,
  logger: Logger,
  signal?: AbortSignal,
  options: WaitOptions = {},
): Promise<MeshStatus> {
  const dbs = [open('modane'), open('kit')];
  const windowMs = options.noProgressMs ?? NO_PROGRESS_MS;
  const staying = Boolean(options.stay || options.waitOnFailure);
  const why = options.stay ? '--stay' : '--wait-on-failure';
  let previous = '';
  let lastProgress = Date.now();
  let windows = 0;
  let failedBefore = '';
  while (!signal?.aborted) {
    const status = await meshStatus(config, (site) => open(site.name));
    const line = progressLine(config, status, files);
    if (line !== previous) {
      previous = line;
      lastProgress = Date.now();
      windows = 0;
      if (process.stderr.isTTY) process.stderr.write(`\r${line}   `);
      else logger.info(line);
    }
    const failed = status.databases.flatMap((db) =>
      Object.entries(db.steps)
        .filter(([, c]) => c.failed > 0)
        .map(([step, c]) => `${db.site} ${step}: ${c.failed}`),
    );
    if (failed.length > 0 && !options.waitOnFailure && !options.stay)
      throw new MeshError('STEP_FAILED', `steps failed (${failed.join(', ')}); see mesh status`);
    if (failed.join() !== failedBefore) {
      failedBefore = failed.join();
      if (failed.length > 0) logger.warn(`steps failed (${failed.join(', ')}); waiting for a retry (status page or mesh retry)`);
    }
    if (await completeEverywhere(config, dbs, files)) return status;
    const still = Date.now() - lastProgress;
    if (still > windowMs * (windows + 1)) {
      const seconds = Math.round(still / 1000);
      if (!staying) throw new MeshError('STEP_FAILED', `no progress for ${seconds} s (${line})`);
      windows++;
      logger.warn(`no progress for ${seconds} s (${line}); staying up (${why}) until interrupted (Ctrl-C)`);
    }
    await sleep(PROGRESS_POLL_MS, signal);
  }
  throw new MeshError('ABORTED', 'simulation interrupted');
}

/**
 * Seconds between the simulation's coordinator rounds. A round reads and writes every server
 * about 40 times (designs, markers, replication jobs, audit, alerts), and its markers wake the
 * status page: at 1 s the idle topology kept a core a quarter busy. The page follows the
 * servers' changes itself, so 5 s loses nothing a user watches (production's default is 30 s).
 */
export const SIMULATION_ROUND_S = 5;

/** How often `waitForEverywhere` reads both servers (each look costs about 20 requests per server). */
const PROGRESS_POLL_MS = 1_000;

/** What the topology needs (sshd, Slurm and NATS each when it can run here), and the status page's port. */
export interface SimulationOptions extends Pick<TopologyOptions, 'ssh' | 'slurm' | 'nats' | 'recordClients' | 'maxAttempts' | 'custody'> {
  /** The coordinator serves the status page on this port (0: a free one); none when undefined. */
  dashboardPort?: number;
}

/** The running topology; `stop()` ends every process it started (idempotent). */
export interface Simulation {
  config: MeshConfig;
  services: SimulationServices;
  open(site: string): Database;
  /** Catalogues the files closed so far in modane's storage (what `mesh ingest` does). */
  ingest(signal?: AbortSignal): Promise<IngestReport>;
  /** The modane agent: proc0, and the trigger that starts lyon's runs (`logLevel`: its own, not the other processes'). */
  startModaneAgent(options?: { logLevel?: LogLevel }): void;
  /**
   * `mesh purge --site modane --copies 1 --older-than 0 --yes` (with `custody`): once lyon's
   * custody records reached modane's server (bounded wait), modane's agent account deletes the
   * sample files that have a verified copy.
   */
  purge(signal?: AbortSignal): Promise<PurgeSummary>;
  /** Stops the agents and the coordinator; the servers stay up to be read. */
  stopMeshProcesses(): Promise<void>;
  stop(): Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  try {
    // not a database: the status page
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * Starts the reference topology in `work` (cli/topology.ts) and its coordinator; resolves once
 * the coordinator has pushed the design documents to both servers and its status page answers.
 */
export async function startSimulation(work: string, options: SimulationOptions, logger: Logger, signal?: AbortSignal): Promise<Simulation> {
  const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' };
  const topology = await startTopology({
    work,
    env,
    logFile: logFile(work),
    logger,
    ssh: options.ssh,
    slurm: options.slurm,
    nats: options.nats,
    recordClients: options.recordClients,
    maxAttempts: options.maxAttempts,
    custody: options.custody,
    coordinatorIntervalS: SIMULATION_ROUND_S,
  });
  try {
    const dashboardPort = options.dashboardPort === 0 ? await freePort() : options.dashboardPort;
    const coordinator = topology.startCoordinator({ dashboardPort });
    const interrupted = () => new MeshError('ABORTED', 'simulation interrupted');
    if (!(await topology.waitForDesign(signal, coordinator))) throw interrupted();
    if (dashboardPort !== undefined) {
      // Printed once the page answers: whoever reads the line may open it at once.
      const url = `http://127.0.0.1:${dashboardPort}/`;
      if (!(await untilReady(coordinator, `served the status page on ${url}`, () => answers(url), signal))) throw interrupted();
      logger.info({ url }, `status page: ${url}`);
    }
    const { config, open } = topology;
    const storage = config.sites.modane.storage as string;
    return {
      config,
      services: topology.services,
      open,
      ingest: (abort) =>
        ingestDirectory(storage, {
          db: topology.ingestDb(),
          docType: config.doc_type,
          ingest: config.ingest,
          stepNames: config.steps.map((s) => s.name),
          site: 'modane',
          runs: { steps: (config.run_steps ?? []).map((s) => s.name), quiet_s: config.ingest.run_quiet_s ?? 3600 },
          signal: abort,
        }),
      purge: async (abort) => {
        const db = topology.ingestDb();
        // The custody records are written at kit's server by lyon's runs and replicate to modane's.
        const verified = async () => (await purgeableBytes(db, 1)) === (await purgeableBytes(db, -1));
        for (let i = 0; i < 120 && !(await verified()); i++) await sleep(500, abort);
        const now = new Date();
        return purgeDaqBuffer(
          { config, site: config.sites.modane, db, by: 'modane/simulate', logger },
          { copies: 1, closedBefore: now, dryRun: false, now: () => new Date(), signal: abort },
        );
      },
      startModaneAgent: (agent) => void topology.startModaneAgent(agent),
      stopMeshProcesses: () => topology.stopProcesses(),
      stop: () => topology.stop(),
    };
  } catch (error) {
    await topology.stop();
    throw error;
  }
}
