/**
 * Real embedded servers in the test's own process, for the in-process tier: HTTP on loopback,
 * one LevelDB folder each under a test folder (folders.ts) that the run removes at its end.
 */
import { join } from 'node:path';
import { silentLogger } from '../../core/log.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { testFolder } from './folders.js';

export interface InProcessSuite {
  /** The suite's folder: the servers' data, and whatever its tests write (logs, outputs, configs). */
  readonly dir: string;
  server(site: string): EmbeddedServer;
}

/** Starts one server per site before the suite's tests and closes them after. */
export function embeddedServersForSuite(prefix: string, sites: readonly string[]): InProcessSuite {
  const servers = new Map<string, EmbeddedServer>();
  let dir = '';
  before(async () => {
    dir = testFolder(prefix);
    for (const site of sites) servers.set(site, await startEmbeddedServer({ site, dataDir: join(dir, site), logger: silentLogger() }));
  });
  after(async () => {
    await Promise.all([...servers.values()].map((s) => s.close()));
    servers.clear();
  });
  return {
    get dir() {
      return dir;
    },
    server(site) {
      const server = servers.get(site);
      if (!server) throw new Error(`no in-process server for ${site} (started before the suite's tests)`);
      return server;
    },
  };
}
