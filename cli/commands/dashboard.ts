import { Command } from 'commander';
import { isLoopbackHost } from '../../server/auth.js';
import { DEFAULT_DASHBOARD_PORT, startDashboard } from '../../dashboard/server.js';
import { type GlobalOptions, loadConfig, makeLogger } from '../context.js';
import { action } from '../exit.js';
import { port } from '../parse.js';

export function dashboardCommand(): Command {
  return new Command('dashboard')
    .description('the live status page: overview, flow and latency, problems, one document, retry for operators')
    .option('--port <port>', `TCP port (0 picks a free one)`, port, DEFAULT_DASHBOARD_PORT)
    .option('--host <host>', 'address to listen on (loopback by default; operators log in over plain HTTP, so put TLS in front of anything else)', '127.0.0.1')
    .action(
      action(async (options: { port: number; host: string }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        const logger = makeLogger(globals, { component: 'dashboard' });
        if (!isLoopbackHost(options.host))
          logger.warn(
            { host: options.host },
            'the dashboard listens beyond loopback over plain HTTP; operator passwords cross the network unencrypted unless a TLS proxy is in front',
          );
        const dashboard = await startDashboard({ config, host: options.host, port: options.port, logger });
        process.stdout.write(`mesh dashboard: ${dashboard.url}\n`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', () => resolve());
          process.once('SIGTERM', () => resolve());
        });
        await dashboard.close();
      }),
    );
}
