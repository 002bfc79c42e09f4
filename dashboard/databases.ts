/** How the status page opens databases: the servers' own credentials for reading, an operator's for writing. */
import { type Credentials, credentialsFor } from '../config/credentials.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { Database } from '../store/database.js';
import { scrubUrl } from '../core/log.js';
import type { OpenDatabase } from '../coordinator/servers.js';

/**
 * A server that does not answer within this is shown as unreachable rather than holding the page
 * forever. Generous: the first query of a view after many writes waits for its index to build.
 */
export const SERVER_TIMEOUT_MS = 30_000;

/** Opens with the site's credentials from the environment; every request gives up after SERVER_TIMEOUT_MS. */
export function readerOpen(config: MeshConfig): OpenDatabase {
  return (site: SiteConfig, database?: string) =>
    new Database({
      url: site.server,
      database: database ?? config.database,
      credentials: credentialsFor(site.credentials_of),
      signal: AbortSignal.timeout(SERVER_TIMEOUT_MS),
    });
}

/** The data database with an operator's credentials (never the dashboard's own); `signal` ends its requests (default: SERVER_TIMEOUT_MS). */
export function operatorDatabase(config: MeshConfig, site: SiteConfig, credentials: Credentials, database?: string, signal?: AbortSignal): Database {
  return new Database({ url: site.server, database: database ?? config.database, credentials, signal: signal ?? AbortSignal.timeout(SERVER_TIMEOUT_MS) });
}

/** A server URL as the browser may see it: no user-info, no query string. */
export function publicUrl(url: string): string {
  return scrubUrl(url)
    .replace(/[?#].*$/s, '')
    .replace(/\/+$/, '');
}
