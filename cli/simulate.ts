import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type IngestReport, ingestDirectory } from '../agents/ingest.js';
import { credentialsFor } from '../config/credentials.js';
import { parseMeshConfig } from '../config/load.js';
import type { MeshConfig } from '../config/types.js';
import { type MeshStatus, meshStatus } from '../coordinator/status.js';
import { Database } from '../core/couch.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { isComplete } from '../core/state.js';
import { type NatsServer, startNatsServer } from './local/nats.js';
import { freePort } from './local/ports.js';
import { type SlurmCluster, startSlurm } from './local/slurm.js';
import { type TestSshd, startSshd } from './local/sshd.js';
import { MESH_MAIN, type ServerChild, spawnMesh, startServerChild, stopChild } from './processes.js';

const SSHD = '/usr/sbin/sshd';
const SLURMCTLD = '/usr/sbin/slurmctld';

export const EXAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'steps');

/** What the simulation found on this machine and started: each optional, each replaced by a local stand-in. */
/** Choices of the simulation that are not services. */
/** The simulation's process log: every child's output goes there. */
export function logFile(work: string): number {
  return openSync(join(work, 'processes.log'), 'a');
}

export interface SimulationConfigOptions {
  /** Attempts of every step before it is failed (default 3). */
  maxAttempts?: number;
}

export interface SimulationServices {
  ssh?: { host: string; port: number; user: string; identity_file: string; host_key_sha256: string };
  slurm?: boolean;
  natsUrl?: string;
}

/** The reference topology on loopback: modane (unreachable, long-running), kit (public), lyon (batch, on kit's server). */
export function simulationConfig(work: string, urls: { modane: string; kit: string }, services: SimulationServices, options: SimulationConfigOptions = {}) {
  const max_attempts = options.maxAttempts ?? 3;
  const node = process.execPath;
  const mesh = [node, resolve(dirname(fileURLToPath(import.meta.url)), 'main.js')];
  const lyonStorage = join(work, 'lyon', 'storage');
  return {
    database: 'datadb',
    doc_type: 'daqdocument',
    sites: {
      modane: { server: urls.modane, reachable: false, long_running: true, may_run: ['proc0'], storage: join(work, 'modane', 'daq'), log_dir: join(work, 'modane', 'logs') },
      kit: { server: urls.kit, reachable: true, long_running: true, may_run: [], log_dir: join(work, 'kit', 'logs') },
      lyon: {
        server: urls.kit,
        reachable: true,
        long_running: false,
        credentials_of: 'kit',
        may_run: ['proc1', 'proc2'],
        storage: lyonStorage,
        log_dir: join(work, 'lyon', 'logs'),
        ...(services.ssh ? { ssh: services.ssh } : {}),
        ...(services.slurm ? { batch: { system: 'slurm', options: [], docs_per_job: 10, mesh } } : {}),
      },
    },
    ingest: { site: 'modane', pattern: '^(?<run_name>[d-n][a-m]\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: [
      services.ssh
        ? { name: 'proc0', site: 'modane', executor: 'sftp', to: 'lyon', out: join(lyonStorage, 'raw', '{run_name}_{file_number}.raw'), timeout_s: 120, max_attempts, lease_s: 30 }
        : { name: 'proc0', site: 'modane', run: [node, join(EXAMPLES, 'transfer.mjs'), '{file}', '{out}'], out: join(lyonStorage, 'raw', '{run_name}_{file_number}.raw'), timeout_s: 120, max_attempts, lease_s: 30 },
      { name: 'proc1', site: 'lyon', run: [node, join(EXAMPLES, 'convert.mjs'), '{prev_out}', '{out}'], out: join(lyonStorage, 'converted', '{run_name}_{file_number}.txt'), timeout_s: 120, max_attempts, lease_s: 30 },
      { name: 'proc2', site: 'lyon', run: [node, join(EXAMPLES, 'analyse.mjs'), '{prev_out}', '{out}'], out: join(lyonStorage, 'analysis', '{run_name}_{file_number}.json'), timeout_s: 120, max_attempts, lease_s: 30 },
    ],
    agent: { sweep_s: 2, heartbeat_s: 2, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
    coordinator: { site: 'modane', interval_s: 1 },
    ...(services.natsUrl ? { nats: { url: services.natsUrl } } : {}),
  };
}

/** Sample DAQ file number `index` (4 KiB of random bytes) and the `.closed` marker a DAQ writes when it is done with it. */
async function writeSampleFile(dir: string, index: number): Promise<void> {
  const run = `lg23b${String(Math.floor(index / 100)).padStart(3, '0')}`;
  const file = join(dir, run, `${run}_${String(index % 100).padStart(3, '0')}`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, randomBytes(4096));
  await writeFile(`${file}.closed`, '');
}

/** Sample DAQ files numbered from `first`, each with its `.closed` marker. */
export async function writeSampleFiles(dir: string, count: number, first = 0): Promise<void> {
  for (let i = first; i < first + count; i++) await writeSampleFile(dir, i);
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
    revisions.push(new Map(done.map((r) => [r.id as string, r.doc?._rev as string])));
  }
  return revisions.every((m) => [...m].every(([id, rev]) => revisions[0].get(id) === rev));
}

function progressLine(config: MeshConfig, status: MeshStatus, files: number): string {
  return status.databases
    .map((db) => (db.reachable ? `${db.site}: ${config.steps.map((s) => `${s.name} ${db.steps[s.name]?.done ?? 0}/${files}`).join(' ')}` : `${db.site}: unreachable`))
    .join(' | ');
}

/**
 * Shows progress per server and step until every file is done everywhere; fails when nothing
 * moves for two minutes, and at the first failed step unless `waitOnFailure` (an operator may
 * retry it from the status page).
 */
export async function waitForEverywhere(config: MeshConfig, open: (site: string) => Database, files: number, logger: Logger, signal?: AbortSignal, waitOnFailure = false): Promise<MeshStatus> {
  const dbs = [open('modane'), open('kit')];
  let previous = '';
  let lastProgress = Date.now();
  let failedBefore = '';
  while (!signal?.aborted) {
    const status = await meshStatus(config, (site) => open(site.name));
    const line = progressLine(config, status, files);
    if (line !== previous) {
      previous = line;
      lastProgress = Date.now();
      if (process.stderr.isTTY) process.stderr.write(`\r${line}   `);
      else logger.info(line);
    }
    const failed = status.databases.flatMap((db) => Object.entries(db.steps).filter(([, c]) => c.failed > 0).map(([step, c]) => `${db.site} ${step}: ${c.failed}`));
    if (failed.length > 0 && !waitOnFailure) throw new MeshError('STEP_FAILED', `steps failed (${failed.join(', ')}); see mesh status`);
    if (failed.join() !== failedBefore) {
      failedBefore = failed.join();
      if (failed.length > 0) logger.warn(`steps failed (${failed.join(', ')}); waiting for a retry (status page or mesh retry)`);
    }
    if (await completeEverywhere(config, dbs, files)) return status;
    if (Date.now() - lastProgress > 120_000) throw new MeshError('STEP_FAILED', `no progress for 120 s (${line})`);
    await sleep(500, signal);
  }
  throw new MeshError('ABORTED', 'simulation interrupted');
}

/** The services the simulated sites use, each only when it can run here (root, installed); a stand-in is logged otherwise. */
export interface LocalServices {
  services: SimulationServices;
  sshd?: TestSshd;
  slurm?: SlurmCluster;
  nats?: NatsServer;
}

/** Starts the private sshd, Slurm cluster and nats-server that `options` ask for; Slurm's client settings are added to `env`. */
export async function startLocalServices(options: { ssh: boolean; slurm: boolean; nats: boolean }, env: NodeJS.ProcessEnv, logger: Logger): Promise<LocalServices> {
  const services: SimulationServices = {};
  let sshd: TestSshd | undefined;
  let slurm: SlurmCluster | undefined;
  let nats: NatsServer | undefined;
  const root = process.getuid?.() === 0;
  if (options.ssh && root && existsSync(SSHD)) {
    try {
      sshd = await startSshd();
      services.ssh = { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 };
      logger.info({ port: sshd.port }, 'sshd up: proc0 goes over SFTP, lyon runs are started over SSH');
    } catch (error) {
      logger.warn(`no sshd (${errorMessage(error)}): proc0 copies locally, lyon runs start locally`);
    }
  } else {
    logger.info('no sshd (needs root and openssh-server): proc0 copies locally, lyon runs start locally');
  }
  if (options.slurm && root && existsSync(SLURMCTLD)) {
    try {
      slurm = await startSlurm();
      Object.assign(env, slurm.env);
      services.slurm = true;
      logger.info('Slurm up: lyon steps run as batch jobs');
    } catch (error) {
      logger.warn(`no Slurm (${errorMessage(error)}): lyon steps run directly`);
    }
  } else if (options.slurm) {
    logger.info('no Slurm (needs root and slurm-wlm): lyon steps run directly');
  }
  if (options.nats) {
    try {
      nats = await startNatsServer();
      services.natsUrl = nats.url;
      logger.info({ url: nats.url }, 'nats-server up: wake-up hints and the claim registry');
    } catch (error) {
      logger.warn(`no NATS (${errorMessage(error)}): CouchDB alone`);
    }
  }
  return { services, sshd, slurm, nats };
}

export interface SimulationOptions {
  /** A private sshd when possible (root, openssh-server): proc0 over SFTP, lyon runs over SSH. */
  ssh: boolean;
  /** A private Slurm cluster when possible (root, slurm-wlm, munge): lyon steps as batch jobs. */
  slurm: boolean;
  /** A private nats-server (when installed): wake-up hints and the claim registry. */
  nats: boolean;
  /** Test aid: modane's server appends one JSON line per connection naming the client process. */
  recordClients?: string;
  /** Attempts of every step before it is failed (default 3). */
  maxAttempts?: number;
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
  /** The modane agent: proc0, and the trigger that starts lyon's runs. */
  startModaneAgent(): void;
  /** Stops the agents and the coordinator; the servers stay up to be read. */
  stopMeshProcesses(): Promise<void>;
  stop(): Promise<void>;
}

/** How long the coordinator may take to push the design documents and open its page (loaded machines are slow). */
const COORDINATOR_READY_MS = 120_000;

/** Polls `ready` until it holds; fails when the coordinator exits first, when interrupted, or after COORDINATOR_READY_MS. */
async function untilCoordinatorReady(coordinator: ChildProcess, what: string, ready: () => Promise<boolean>, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + COORDINATOR_READY_MS;
  while (!(await ready())) {
    if (coordinator.exitCode !== null || coordinator.signalCode !== null) throw new MeshError('PROCESS_FAILED', `the coordinator exited (${coordinator.exitCode ?? coordinator.signalCode}) before it ${what}; see the simulation log`);
    if (Date.now() > deadline) throw new MeshError('PROCESS_FAILED', `the coordinator has not ${what} after ${COORDINATOR_READY_MS / 1000} s; see the simulation log`);
    if (!(await sleep(200, signal))) throw new MeshError('ABORTED', 'simulation interrupted');
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * Starts the reference topology in `work`: modane's and kit's servers, the optional services
 * (each replaced by a local stand-in when it cannot run here), the coordinator; resolves once
 * the coordinator has pushed the design documents to both servers.
 */
export async function startSimulation(work: string, options: SimulationOptions, logger: Logger, signal?: AbortSignal): Promise<Simulation> {
  const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' };
  const log = logFile(work);
  const servers: ServerChild[] = [];
  const children: ReturnType<typeof spawnMesh>[] = [];
  let sshd: TestSshd | undefined;
  let slurm: SlurmCluster | undefined;
  let nats: NatsServer | undefined;
  const stopMeshProcesses = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
  };
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await stopMeshProcesses();
      await Promise.all(servers.map((s) => s.stop()));
      await sshd?.stop();
      await slurm?.stop();
      await nats?.stop();
    })());
  try {
    const modane = await startServerChild('modane', join(work, 'modane', 'couch'), { env, logFile: log, recordClients: options.recordClients });
    servers.push(modane);
    const kit = await startServerChild('kit', join(work, 'kit', 'couch'), { env, logFile: log });
    servers.push(kit);
    logger.info({ modane: modane.url, kit: kit.url }, 'servers up (modane is reachable by nobody; every replication is modane\'s)');

    const local = await startLocalServices(options, env, logger);
    ({ sshd, slurm, nats } = local);
    const { services } = local;

    const configFile = join(work, 'mesh.json');
    const raw = simulationConfig(work, { modane: modane.url, kit: kit.url }, services, { maxAttempts: options.maxAttempts });
    // How modane starts mesh at lyon; over SSH the Slurm client settings must travel in the argument vector.
    const lyonMesh = [...(slurm ? ['/usr/bin/env', ...Object.entries(slurm.env).map(([k, v]) => `${k}=${v}`)] : []), process.execPath, resolve(MESH_MAIN), '--config', configFile];
    raw.sites.lyon = { ...raw.sites.lyon, mesh: lyonMesh } as typeof raw.sites.lyon;
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    // The servers have an admin when MESH_<SITE>_USER/PASSWORD are set; every process reads them from the environment.
    const open = (site: string) => new Database({ url: config.sites[site].server, database: config.database, credentials: credentialsFor(config.sites[site].credentials_of) });

    const dashboardPort = options.dashboardPort === 0 ? await freePort() : options.dashboardPort;
    const coordinator = spawnMesh(['--config', configFile, 'coordinator', '--interval', '1', ...(dashboardPort !== undefined ? ['--dashboard-port', String(dashboardPort)] : [])], { env, logFile: log });
    children.push(coordinator);
    await untilCoordinatorReady(coordinator, 'pushed the design documents to both servers', async () => (await Promise.all(['modane', 'kit'].map((site) => open(site).get('_design/mesh').catch(() => undefined)))).every(Boolean), signal);
    if (dashboardPort !== undefined) {
      // Printed once the page answers: whoever reads the line may open it at once.
      const url = `http://127.0.0.1:${dashboardPort}/`;
      await untilCoordinatorReady(coordinator, `served the status page on ${url}`, () => answers(url), signal);
      logger.info({ url }, `status page: ${url}`);
    }
    const storage = config.sites.modane.storage as string;
    return {
      config,
      services,
      open,
      ingest: (abort) => ingestDirectory(storage, { db: open('modane'), docType: config.doc_type, ingest: config.ingest, site: 'modane', signal: abort }),
      startModaneAgent: () => {
        const trigger = ['--trigger-interval', '2', ...(services.ssh ? [] : ['--trigger-local'])];
        children.push(spawnMesh(['--config', configFile, 'agent', '--site', 'modane', '--name', 'modane-1', '--concurrency', '4', ...trigger], { env, logFile: log }));
      },
      stopMeshProcesses,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
