/**
 * The simulated two-site topology as parts that can be started, stopped and started again:
 * modane's and kit's embedded servers (fixed data folders and ports, so a restart is the same
 * server), the optional private sshd, Slurm cluster and nats-server, and the long-running
 * processes (coordinator, modane agent). `mesh simulate` runs it once; the fault harness
 * (test/faults/) kills and restarts its parts.
 */
import type { ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { credentialsFor } from '../config/credentials.js';
import { credentialFileEnv } from './credential-files.js';
import { type SimulationAccounts, createSimulationAccounts, withAccount } from './simulation-accounts.js';
import { parseMeshConfig } from '../config/load.js';
import type { LogLevel } from '../config/log-level.js';
import type { MeshConfig } from '../config/types.js';
import { Database } from '../store/database.js';
import { MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import type { NatsServer } from './local/nats.js';
import { startLocalServices } from './local/services.js';
import type { SlurmCluster } from './local/slurm.js';
import type { TestSshd } from './local/sshd.js';
import { MESH_MAIN, type ServerChild, spawnMesh, startServerChild, stopChild } from './processes.js';
import { type SimulationServices, simulationConfig } from './simulation-config.js';

/**
 * The example steps' test aids (examples/steps/fault-switch.mjs: the fault switch, the run log,
 * a pause per run): lyon's runs must see them too, and over SSH they inherit nothing of ours.
 */
const TEST_AIDS = Object.freeze(['MESH_FAULT_DIR', 'MESH_RUN_LOG', 'MESH_STEP_SLEEP_MS']);

function testAids(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(TEST_AIDS.flatMap((name) => (env[name] ? [[name, env[name] as string]] : [])));
}

/** The topology's process log, in its folder: every child's output goes there. */
export function logFile(work: string): number {
  return openSync(join(work, 'processes.log'), 'a');
}

/** How long the coordinator may take to push the design documents or open its page (loaded machines are slow). */
const COORDINATOR_READY_MS = 120_000;

export type ServerSite = 'modane' | 'kit';
export type RawSimulationConfig = ReturnType<typeof simulationConfig>;

export interface TopologyOptions {
  work: string;
  /** Environment of every process started here (and, over SSH, `lyonEnv` for lyon's). */
  env: NodeJS.ProcessEnv;
  logFile: number;
  logger: Logger;
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
  /** proc0 makes a custody copy at lyon (`mesh simulate --purge`). */
  custody?: boolean;
  /**
   * Seconds between two coordinator rounds (default 1, for the fault harness: it checks its
   * invariants after rounds). A round reads and writes every server about 40 times.
   */
  coordinatorIntervalS?: number;
  /** Variables the lyon runs started over SSH must see too (they do not inherit ours). */
  lyonEnv?: Record<string, string>;
  /** Changes the generated config before it is written (e.g. shorter timeouts). */
  adjust?: (raw: RawSimulationConfig) => void;
}

export interface Topology {
  readonly work: string;
  readonly config: MeshConfig;
  readonly configFile: string;
  readonly services: SimulationServices;
  readonly sshd?: TestSshd;
  readonly slurm?: SlurmCluster;
  readonly nats?: NatsServer;
  /** The running server of each site (replaced by `startServer`). */
  readonly servers: Record<ServerSite, ServerChild>;
  open(site: string): Database;
  /** Modane's database as its ingest writes it: with accounts, as modane's agent (cataloguing is that role's act). */
  ingestDb(): Database;
  /** Starts a site's server again on its data folder and port (after it was stopped or killed). */
  startServer(site: ServerSite): Promise<ServerChild>;
  /** The coordinator, serving the status page on `dashboardPort` when given. */
  startCoordinator(options?: { dashboardPort?: number }): ChildProcess;
  /** `logLevel`: the agent's own (`--log-level`), e.g. `debug` for the trigger's moments (bench/latency.ts). */
  startModaneAgent(options?: { logLevel?: LogLevel }): ChildProcess;
  /**
   * Resolves once both servers hold `_design/mesh` (the coordinator pushed it); false when
   * aborted. Throws when `coordinator` exits first, or after two minutes.
   */
  waitForDesign(signal?: AbortSignal, coordinator?: ChildProcess): Promise<boolean>;
  /** Stops the coordinator and agents started here (SIGTERM, then SIGKILL). */
  stopProcesses(): Promise<void>;
  /** Stops every process started here, then the servers and services. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the servers and the services this machine can run; the processes are started by the caller. */
export async function startTopology(options: TopologyOptions): Promise<Topology> {
  const { work, env, logFile, logger } = options;
  const children = new Set<ChildProcess>();
  const dataDir = (site: ServerSite) => join(work, site, 'couch');
  const recordFor = (site: ServerSite) => (site === 'modane' && options.recordClients ? resolve(options.recordClients) : undefined);
  const servers = {} as Record<ServerSite, ServerChild>;
  let sshd: TestSshd | undefined;
  let slurm: SlurmCluster | undefined;
  let nats: NatsServer | undefined;
  let stopping: Promise<void> | undefined;
  const stopProcesses = async () => {
    await Promise.all([...children].map((c) => stopChild(c)));
  };
  const stop = () => {
    stopping ??= (async () => {
      await stopProcesses();
      await Promise.all(Object.values(servers).map((s) => s.stop()));
      await sshd?.stop();
      await slurm?.stop();
      await nats?.stop();
    })();
    return stopping;
  };
  try {
    for (const site of ['modane', 'kit'] as const)
      servers[site] = await startServerChild(site, dataDir(site), { env, logFile, recordClients: recordFor(site) });
    logger.info({ modane: servers.modane.url, kit: servers.kit.url }, "servers up (modane is reachable by nobody; every replication is modane's)");

    const local = await startLocalServices(options, env, logger);
    ({ sshd, slurm, nats } = local);
    const { services } = local;

    const configFile = join(work, 'mesh.json');
    const raw = simulationConfig(work, { modane: servers.modane.url, kit: servers.kit.url }, services, {
      maxAttempts: options.maxAttempts,
      custody: options.custody,
      coordinatorIntervalS: options.coordinatorIntervalS,
    });
    // How modane starts mesh at lyon; over SSH the environment (Slurm client settings, the
    // credentials of the servers lyon talks to, as password files, the test aids) must travel in
    // the argument vector: the private sshd accepts no environment (no AcceptEnv), and a real one rarely does.
    const lyonServers = [raw.sites.lyon.credentials_of ?? 'lyon'];
    // With server admins, each process logs in with an account of its own (simulation-accounts.ts).
    const accounts: SimulationAccounts | undefined = await createSimulationAccounts(
      { modane: servers.modane.url, kit: servers.kit.url },
      env,
      join(work, 'secrets'),
    );
    if (accounts)
      logger.info(
        { operator: accounts.account('operator').user, password_file: accounts.account('operator').password_file },
        'each process has its own account; log in on the status page as this operator',
      );
    const lyonCredentials = accounts
      ? await credentialFileEnv(lyonServers, withAccount({}, accounts.env('lyon-agent')), join(work, 'secrets'))
      : await credentialFileEnv(lyonServers, env, join(work, 'secrets'));
    const lyonEnv = { ...(slurm?.env ?? {}), ...testAids(env), ...lyonCredentials, ...(options.lyonEnv ?? {}) };
    // A password in the remote environment would win over the password file named here (config/credentials.ts): unset it there.
    const unset = Object.keys(lyonEnv)
      .filter((name) => name.endsWith('_PASSWORD_FILE'))
      .flatMap((name) => ['-u', name.slice(0, -'_FILE'.length)]);
    const envPrefix = Object.keys(lyonEnv).length > 0 ? ['/usr/bin/env', ...unset, ...Object.entries(lyonEnv).map(([k, v]) => `${k}=${v}`)] : [];
    raw.sites.lyon = { ...raw.sites.lyon, mesh: [...envPrefix, process.execPath, resolve(MESH_MAIN), '--config', configFile] } as typeof raw.sites.lyon;
    options.adjust?.(raw);
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const config = parseMeshConfig(raw, configFile);
    // The servers have an admin when MESH_<SITE>_USER/PASSWORD are set; every process reads them from the environment.
    const open = (site: string) =>
      new Database({ url: config.sites[site].server, database: config.database, credentials: credentialsFor(config.sites[site].credentials_of) });
    const ingestDb = () =>
      accounts
        ? new Database({
            url: config.sites.modane.server,
            database: config.database,
            credentials: credentialsFor(config.sites.modane.credentials_of, withAccount(env, accounts.env('modane-agent'))),
          })
        : open('modane');
    const spawnTracked = (args: string[], processEnv: NodeJS.ProcessEnv = env) => {
      const child = spawnMesh(['--config', configFile, ...args], { env: processEnv, logFile });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    };
    return {
      work,
      config,
      configFile,
      services,
      sshd,
      slurm,
      nats,
      servers,
      open,
      ingestDb,
      async startServer(site) {
        servers[site] = await startServerChild(site, dataDir(site), { port: servers[site].port, env, logFile, recordClients: recordFor(site) });
        return servers[site];
      },
      startCoordinator: (coordinator = {}) =>
        spawnTracked(
          [
            'coordinator',
            '--interval',
            String(config.coordinator.interval_s),
            ...(coordinator.dashboardPort === undefined ? [] : ['--dashboard-port', String(coordinator.dashboardPort)]),
          ],
          accounts ? { ...env, ...accounts.replicationEnv() } : env,
        ),
      startModaneAgent: (agent = {}) =>
        spawnTracked(
          [
            ...(agent.logLevel ? ['--log-level', agent.logLevel] : []),
            'agent',
            '--site',
            'modane',
            '--name',
            'modane-1',
            '--concurrency',
            '4',
            '--trigger-interval',
            '2',
            ...(services.ssh ? [] : ['--trigger-local']),
          ],
          accounts ? withAccount(env, accounts.env('modane-agent')) : env,
        ),
      async waitForDesign(signal, coordinator) {
        const designed = async () =>
          (
            await Promise.all(
              ['modane', 'kit'].map((site) =>
                open(site)
                  .get('_design/mesh')
                  .catch(() => undefined),
              ),
            )
          ).every(Boolean);
        return untilReady(coordinator, 'pushed the design documents to both servers', designed, signal);
      },
      stopProcesses,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Polls `ready` until it holds; false when aborted. Throws when the coordinator (if given)
 * exits first, or after COORDINATOR_READY_MS.
 */
export async function untilReady(coordinator: ChildProcess | undefined, what: string, ready: () => Promise<boolean>, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + COORDINATOR_READY_MS;
  while (!(await ready())) {
    if (coordinator && (coordinator.exitCode !== null || coordinator.signalCode !== null)) {
      throw new MeshError(
        'PROCESS_FAILED',
        `the coordinator exited (${coordinator.exitCode ?? coordinator.signalCode}) before it ${what}; see processes.log in the simulation folder`,
      );
    }
    if (Date.now() > deadline)
      throw new MeshError(
        'PROCESS_FAILED',
        `the coordinator has not ${what} after ${COORDINATOR_READY_MS / 1000} s; see processes.log in the simulation folder`,
      );
    if (!(await sleep(200, signal))) return false;
  }
  return true;
}
