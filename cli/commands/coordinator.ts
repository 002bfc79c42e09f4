import { Command, InvalidArgumentError } from 'commander';
import { MAX_TIMER_S } from '../../config/validate.js';
import { assertAssignable } from '../../coordinator/assignment.js';
import { runCoordinator } from '../../coordinator/round.js';
import { type Dashboard, startDashboard } from '../../dashboard/server.js';
import { type GlobalOptions, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { port } from '../parse.js';

function seconds(text: string): number {
  const value = Number(text);
  // A longer delay than a Node timer takes would fire after 1 ms: rounds without pause.
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_S)
    throw new InvalidArgumentError(`"${text}" is not a positive number of seconds up to ${MAX_TIMER_S}`);
  return value;
}

export function coordinatorCommand(): Command {
  return new Command('coordinator')
    .description(
      'keep replication between the servers running, publish the step assignment, audit and resolve double claims, log alerts (missed latency targets, silent agents, a stalled step, a failing or unheard site, replication behind)',
    )
    .option('--once', 'one round, then exit')
    .option('--interval <s>', 'seconds between rounds (default: coordinator.interval_s of the config)', seconds)
    .option('--dashboard-port <port>', 'also serve the live status page on this port (loopback; 0 picks a free one)', port)
    .action(
      action(async (options: { once?: boolean; interval?: number; dashboardPort?: number }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        assertAssignable(config);
        const site = siteOf(config, config.coordinator.site);
        const logger = makeLogger(globals, { site: site.name, component: 'coordinator' });
        const stop = new AbortController();
        const onSignal = (signal: string) => {
          if (stop.signal.aborted) {
            logger.warn({ signal }, 'second signal, exiting now');
            process.exit(1);
          }
          logger.info({ signal }, 'signal received; stopping after this round');
          stop.abort();
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
        let dashboard: Dashboard | undefined;
        try {
          if (options.dashboardPort !== undefined) {
            dashboard = await startDashboard({ config, host: '127.0.0.1', port: options.dashboardPort, logger: logger.child({ component: 'dashboard' }) });
            // One line on stdout, so whoever started the coordinator can show the page's address.
            process.stdout.write(`${JSON.stringify({ dashboard: dashboard.url })}\n`);
            logger.info({ url: dashboard.url }, 'status page served');
          }
          await runCoordinator(
            { config, open: (s, database) => openSiteDatabase(config, s, { database }), logger, by: `coordinator/${site.name}` },
            { once: Boolean(options.once), intervalMs: (options.interval ?? config.coordinator.interval_s) * 1000, signal: stop.signal },
          );
        } finally {
          await dashboard?.close();
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
        }
      }),
    );
}
