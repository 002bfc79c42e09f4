/** `mesh server --site S [--port P] [--host H] [--data DIR]`: runs a site's embedded CouchDB-compatible server. */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { credentialsFor } from '../../config/credentials.js';
import { errorMessage, isMeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';

interface ServerCommandOptions {
  site: string;
  port: number;
  host: string;
  data?: string;
  recordClients?: string;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('expected a TCP port (0–65535; 0 picks a free one)');
  return port;
}

async function runServer(options: ServerCommandOptions): Promise<void> {
  const logger = createLogger();
  let admin;
  try {
    admin = credentialsFor(options.site);
  } catch (error) {
    logger.error({ code: isMeshError(error) ? error.code : undefined }, errorMessage(error));
    process.exitCode = 2;
    return;
  }
  const dataDir = resolve(options.data ?? `./data/${options.site}`);
  let server;
  try {
    // Loaded on demand: PouchDB and express would otherwise weigh on every other command
    // (an agent forks its step programs, and a fork costs in proportion to its memory).
    const { startEmbeddedServer } = await import('../../server/embedded.js');
    server = await startEmbeddedServer({
      site: options.site,
      host: options.host,
      port: options.port,
      dataDir,
      admin,
      logger,
      recordClients: options.recordClients ? resolve(options.recordClients) : undefined,
    });
  } catch (error) {
    logger.error({ code: isMeshError(error) ? error.code : undefined }, errorMessage(error));
    process.stderr.write(`mesh server: ${errorMessage(error)}\n`);
    process.exitCode = 2;
    return;
  }
  process.stdout.write(JSON.stringify({ site: options.site, url: server.url, port: server.port }) + '\n');

  const running = server;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: errorMessage(error) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

export function serverCommand(): Command {
  return new Command('server')
    .description("Run a site's embedded CouchDB-compatible server (credentials from MESH_<SITE>_USER and MESH_<SITE>_PASSWORD or _PASSWORD_FILE)")
    .requiredOption('--site <site>', 'site name')
    .option('--port <port>', 'TCP port, 0 for a free one', parsePort, 0)
    .option('--host <host>', 'address to bind; anything but loopback requires credentials', '127.0.0.1')
    .option('--data <dir>', 'data directory (default ./data/<site>)')
    .option('--record-clients <file>', 'test aid: append one JSON line per connection naming the client process (Linux)')
    .action(async (options: ServerCommandOptions) => {
      await runServer(options);
    });
}
