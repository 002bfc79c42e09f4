import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { credentialsFor } from '../../config/credentials.js';
import { ingestDirectory } from '../../agents/ingest.js';
import { parseMeshConfig } from '../../config/load.js';
import { meshStatus } from '../../coordinator/status.js';
import { Database } from '../../core/couch.js';
import { errorMessage } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';
import { type GlobalOptions, makeLogger } from '../context.js';
import { action } from '../exit.js';
import { type TestSshd, startSshd } from '../local/sshd.js';
import { type NatsServer, startNatsServer } from '../local/nats.js';
import { type SlurmCluster, startSlurm } from '../local/slurm.js';
import { port, positiveInteger } from '../parse.js';
import { MESH_MAIN, type ServerChild, spawnMesh, startServerChild, stopChild } from '../processes.js';
import { type SimulationServices, logFile, simulationConfig, waitForEverywhere, writeSampleFiles } from '../simulate.js';

const SSHD = '/usr/sbin/sshd';
const SLURMCTLD = '/usr/sbin/slurmctld';

export function simulateCommand(): Command {
  return new Command('simulate')
    .description('the whole topology on this machine: modane and kit servers, the coordinator, the modane agent, lyon runs triggered from modane')
    .option('--files <n>', 'number of sample DAQ files', positiveInteger, 20)
    .option('--no-ssh', 'copy locally for proc0 and start lyon runs locally even when an sshd could be started')
    .option('--no-slurm', 'run lyon steps directly even when a Slurm cluster could be started')
    .option('--nats', 'start a nats-server (when installed) for wake-up hints and the claim registry')
    .option('--json', 'print the final `mesh status --json` as the last line')
    .option('--keep', 'keep the temporary folder')
    .option('--dashboard-port <port>', 'port of the live status page the coordinator serves (0: a free one)', port, 0)
    .option('--no-dashboard', 'do not serve the status page')
    .option('--max-attempts <n>', 'attempts of each step before it is failed', positiveInteger, 3)
    .option('--wait-on-failure', 'when a step fails, keep going (until nothing moves for two minutes) so an operator can retry it from the status page')
    .option('--stay', 'once every file is done, keep the topology and the status page up until interrupted')
    .option('--record-clients <file>', 'test aid: modane\'s server appends one JSON line per connection naming the client process')
    .action(
      action(async (options: { files: number; ssh: boolean; slurm: boolean; nats?: boolean; json?: boolean; keep?: boolean; recordClients?: string; dashboard: boolean; dashboardPort: number; maxAttempts: number; waitOnFailure?: boolean; stay?: boolean }, command: Command) => {
        const logger = makeLogger(command.optsWithGlobals<GlobalOptions>(), { sim: 'simulate' });
        const work = await mkdtemp(join(tmpdir(), 'mesh-simulate-'));
        const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' };
        const log = logFile(work);
        const servers: ServerChild[] = [];
        const children: ReturnType<typeof spawnMesh>[] = [];
        let sshd: TestSshd | undefined;
        let slurm: SlurmCluster | undefined;
        let nats: NatsServer | undefined;
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          const modane = await startServerChild('modane', join(work, 'modane', 'couch'), { env, logFile: log, recordClients: options.recordClients ? resolve(options.recordClients) : undefined });
          servers.push(modane);
          const kit = await startServerChild('kit', join(work, 'kit', 'couch'), { env, logFile: log });
          servers.push(kit);
          logger.info({ modane: modane.url, kit: kit.url }, 'servers up (modane is reachable by nobody; every replication is modane\'s)');

          const services: SimulationServices = {};
          if (options.ssh && process.getuid?.() === 0 && existsSync(SSHD)) {
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

          const root = process.getuid?.() === 0;
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

          const configFile = join(work, 'mesh.json');
          const raw = simulationConfig(work, { modane: modane.url, kit: kit.url }, services, { maxAttempts: options.maxAttempts });
          // How modane starts mesh at lyon; over SSH the Slurm client settings must travel in the argument vector.
          const lyonMesh = [...(slurm ? ['/usr/bin/env', ...Object.entries(slurm.env).map(([k, v]) => `${k}=${v}`)] : []), process.execPath, resolve(MESH_MAIN), '--config', configFile];
          raw.sites.lyon = { ...raw.sites.lyon, mesh: lyonMesh } as typeof raw.sites.lyon;
          await writeFile(configFile, JSON.stringify(raw, null, 2));
          const config = parseMeshConfig(raw, configFile);
          // The servers have an admin when MESH_<SITE>_USER/PASSWORD are set; every process reads them from the environment.
          const open = (site: string) => new Database({ url: config.sites[site].server, database: config.database, credentials: credentialsFor(config.sites[site].credentials_of) });

          const coordinator = spawnMesh(['--config', configFile, 'coordinator', '--interval', '1', ...(options.dashboard ? ['--dashboard-port', String(options.dashboardPort)] : [])], { env, logFile: log });
          children.push(coordinator);
          if (options.dashboard && coordinator.stdout) {
            createInterface({ input: coordinator.stdout }).on('line', (line) => {
              let url: unknown;
              try {
                url = (JSON.parse(line) as { dashboard?: unknown }).dashboard;
              } catch {
                return;
              }
              if (typeof url === 'string') logger.info({ url }, `status page: ${url}`);
            });
          }
          for (const site of ['modane', 'kit']) {
            while (!(await open(site).get('_design/mesh').catch(() => undefined))) {
              if (!(await sleep(200, stop.signal))) return;
            }
          }
          await writeSampleFiles(config.sites.modane.storage as string, options.files);
          const ingested = await ingestDirectory(config.sites.modane.storage as string, { db: open('modane'), docType: config.doc_type, ingest: config.ingest, site: 'modane' });
          logger.info({ created: ingested.created }, 'sample files catalogued at modane');
          children.push(
            spawnMesh(['--config', configFile, 'agent', '--site', 'modane', '--name', 'modane-1', '--concurrency', '4', '--trigger-interval', '2', ...(services.ssh ? [] : ['--trigger-local'])], { env, logFile: log }),
          );

          await waitForEverywhere(config, open, options.files, logger, stop.signal, options.waitOnFailure);
          if (process.stderr.isTTY) process.stderr.write('\n');
          logger.info(`all ${options.files} files done and identical on modane and kit`);
          if (options.stay) {
            logger.info('staying up (--stay) until interrupted');
            await new Promise<void>((resolve) => (stop.signal.aborted ? resolve() : stop.signal.addEventListener('abort', () => resolve(), { once: true })));
          }
          await Promise.all(children.map((c) => stopChild(c)));
          const status = await meshStatus(config, (site, database) => new Database({ url: site.server, database: database ?? config.database, credentials: credentialsFor(site.credentials_of) }));
          if (options.json) process.stdout.write(`${JSON.stringify(status)}\n`);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await Promise.all(children.map((c) => stopChild(c)));
          await Promise.all(servers.map((s) => s.stop()));
          await sshd?.stop();
          await slurm?.stop();
          await nats?.stop();
          if (!options.keep) await rm(work, { recursive: true, force: true });
          else logger.info({ work }, 'kept the simulation folder');
        }
      }),
    );
}
