import { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentialsFor } from '../../config/credentials.js';
import { meshStatus } from '../../coordinator/status.js';
import { Database } from '../../store/database.js';
import { type GlobalOptions, makeLogger } from '../context.js';
import { action } from '../exit.js';
import { formatPurgeSummary } from './purge.js';
import { port, positiveInteger } from '../parse.js';
import { NO_PROGRESS_MS, type Simulation, arriveOverTime, startSimulation, waitForEverywhere, writeSampleFiles } from '../simulate.js';

export function simulateCommand(): Command {
  return new Command('simulate')
    .description('the whole topology on this machine: modane and kit servers, the coordinator, the modane agent, lyon runs triggered from modane')
    .option('--files <n>', 'number of sample DAQ files', positiveInteger, 20)
    .option('--arrival-ms <ms>', 'files close one at a time, this many milliseconds apart (default: all at once)', positiveInteger)
    .option('--no-ssh', 'copy locally for proc0 and start lyon runs locally even when an sshd could be started')
    .option('--no-slurm', 'run lyon steps directly even when a Slurm cluster could be started')
    .option('--nats', 'start a nats-server (when installed) for wake-up hints and the claim registry')
    .option('--purge', "proc0's copy at lyon is a custody copy that lyon verifies; at the end, purge modane's DAQ buffer and print the summary")
    .option('--json', 'print the final `mesh status --json` as the last line')
    .option('--keep', 'keep the temporary folder')
    .option('--dashboard-port <port>', 'port of the live status page the coordinator serves (0: a free one)', port, 0)
    .option('--no-dashboard', 'do not serve the status page')
    .option('--max-attempts <n>', 'attempts of each step before it is failed', positiveInteger, 3)
    .option(
      '--wait-on-failure',
      'when a step fails, keep going until every file is done or until interrupted, so an operator can retry it from the status page',
    )
    .option('--stay', 'keep the topology and the status page up until interrupted: once every file is done, and also when a step fails or nothing moves')
    .option(
      '--give-up-after <s>',
      'without --stay or --wait-on-failure, give up when nothing moves for this many seconds',
      positiveInteger,
      NO_PROGRESS_MS / 1000,
    )
    .option('--record-clients <file>', "test aid: modane's server appends one JSON line per connection naming the client process")
    .action(
      action(
        async (
          options: {
            files: number;
            arrivalMs?: number;
            ssh: boolean;
            slurm: boolean;
            nats?: boolean;
            purge?: boolean;
            json?: boolean;
            keep?: boolean;
            recordClients?: string;
            dashboard: boolean;
            dashboardPort: number;
            maxAttempts: number;
            waitOnFailure?: boolean;
            stay?: boolean;
            giveUpAfter: number;
          },
          command: Command,
        ) => {
          const logger = makeLogger(command.optsWithGlobals<GlobalOptions>(), { sim: 'simulate' });
          const work = await mkdtemp(join(tmpdir(), 'mesh-simulate-'));
          const stop = new AbortController();
          const onSignal = () => stop.abort();
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          let sim: Simulation | undefined;
          try {
            const simulation = await startSimulation(
              work,
              {
                ssh: options.ssh,
                slurm: options.slurm,
                nats: Boolean(options.nats),
                recordClients: options.recordClients ? resolve(options.recordClients) : undefined,
                maxAttempts: options.maxAttempts,
                custody: Boolean(options.purge),
                dashboardPort: options.dashboard ? options.dashboardPort : undefined,
              },
              logger,
              stop.signal,
            );
            sim = simulation;
            const { config, open } = simulation;
            const storage = config.sites.modane.storage as string;
            simulation.startModaneAgent();
            if (options.arrivalMs === undefined) {
              await writeSampleFiles(storage, options.files);
              const ingested = await simulation.ingest(stop.signal);
              logger.info({ created: ingested.created }, 'sample files catalogued at modane');
            } else {
              logger.info({ files: options.files, every_ms: options.arrivalMs }, 'sample files close one at a time, each catalogued at once');
              await arriveOverTime(storage, options.files, options.arrivalMs, () => simulation.ingest(stop.signal), stop.signal);
            }
            await waitForEverywhere(config, open, options.files, logger, stop.signal, {
              waitOnFailure: options.waitOnFailure,
              stay: options.stay,
              noProgressMs: options.giveUpAfter * 1000,
            });
            if (process.stderr.isTTY) process.stderr.write('\n');
            logger.info(`all ${options.files} files done and identical on modane and kit`);
            if (options.stay) {
              logger.info('staying up (--stay) until interrupted');
              await new Promise<void>((done) => (stop.signal.aborted ? done() : stop.signal.addEventListener('abort', () => done(), { once: true })));
            }
            if (options.purge) process.stdout.write(formatPurgeSummary(await simulation.purge(stop.signal), 'modane'));
            await simulation.stopMeshProcesses();
            const status = await meshStatus(
              config,
              (site, database) => new Database({ url: site.server, database: database ?? config.database, credentials: credentialsFor(site.credentials_of) }),
            );
            if (options.json) process.stdout.write(`${JSON.stringify(status)}\n`);
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            await sim?.stop();
            if (!options.keep) await rm(work, { recursive: true, force: true });
            else logger.info({ work }, 'kept the simulation folder');
          }
        },
      ),
    );
}
