import { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ingestDirectory } from '../../agents/ingest.js';
import { meshStatus } from '../../coordinator/status.js';
import { Database } from '../../core/couch.js';
import { type GlobalOptions, makeLogger } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';
import { logFile, waitForEverywhere, writeSampleFiles } from '../simulate.js';
import { type Topology, startTopology } from '../topology.js';

export function simulateCommand(): Command {
  return new Command('simulate')
    .description('the whole topology on this machine: modane and kit servers, the coordinator, the modane agent, lyon runs triggered from modane')
    .option('--files <n>', 'number of sample DAQ files', positiveInteger, 20)
    .option('--no-ssh', 'copy locally for proc0 and start lyon runs locally even when an sshd could be started')
    .option('--no-slurm', 'run lyon steps directly even when a Slurm cluster could be started')
    .option('--nats', 'start a nats-server (when installed) for wake-up hints and the claim registry')
    .option('--json', 'print the final `mesh status --json` as the last line')
    .option('--keep', 'keep the temporary folder')
    .option('--record-clients <file>', 'test aid: modane\'s server appends one JSON line per connection naming the client process')
    .action(
      action(async (options: { files: number; ssh: boolean; slurm: boolean; nats?: boolean; json?: boolean; keep?: boolean; recordClients?: string }, command: Command) => {
        const logger = makeLogger(command.optsWithGlobals<GlobalOptions>(), { sim: 'simulate' });
        const work = await mkdtemp(join(tmpdir(), 'mesh-simulate-'));
        const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' };
        let topology: Topology | undefined;
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          topology = await startTopology({ work, env, logFile: logFile(work), logger, ssh: options.ssh, slurm: options.slurm, nats: Boolean(options.nats), recordClients: options.recordClients });
          const { config, open } = topology;
          topology.startCoordinator();
          if (!(await topology.waitForDesign(stop.signal))) return;
          await writeSampleFiles(config.sites.modane.storage as string, options.files);
          const ingested = await ingestDirectory(config.sites.modane.storage as string, { db: open('modane'), docType: config.doc_type, ingest: config.ingest, site: 'modane' });
          logger.info({ created: ingested.created }, 'sample files catalogued at modane');
          topology.startModaneAgent();

          await waitForEverywhere(config, open, options.files, logger, stop.signal);
          if (process.stderr.isTTY) process.stderr.write('\n');
          logger.info(`all ${options.files} files done and identical on modane and kit`);
          await topology.stopProcesses();
          const status = await meshStatus(config, (site, database) => new Database({ url: site.server, database: database ?? config.database }));
          if (options.json) process.stdout.write(`${JSON.stringify(status)}\n`);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await topology?.stop();
          if (!options.keep) await rm(work, { recursive: true, force: true });
          else logger.info({ work }, 'kept the simulation folder');
        }
      }),
    );
}
