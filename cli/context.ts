import { hostname } from 'node:os';
import { credentialsFor, replicationCredentialsFor } from '../config/credentials.js';
import { configPath, loadMeshConfig } from '../config/load.js';
import { logLevelFrom } from '../config/log-level.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { Database, type RetryMode } from '../store/database.js';
import { MeshError } from '../core/errors.js';
import { type Logger, createLogger } from '../core/log.js';

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
}

/** Reads the mesh config named by --config / MESH_CONFIG / the default profile. */
export function loadConfig(options: GlobalOptions): MeshConfig {
  return loadMeshConfig(configPath(options.config));
}

export function makeLogger(options: GlobalOptions, bindings: Record<string, unknown> = {}): Logger {
  return createLogger({ level: logLevelFrom(options.logLevel) }).child(bindings);
}

export function siteOf(config: MeshConfig, name: string | undefined): SiteConfig {
  const site = name ? config.sites[name] : undefined;
  if (!site)
    throw new MeshError(
      'CONFIG_INVALID',
      `--site is ${name === undefined ? 'missing' : JSON.stringify(name)}, expected one of: ${Object.keys(config.sites).join(', ')} (from ${config.source})`,
    );
  return site;
}

/**
 * The database a site's processes talk to (or `options.database` on the same server, `''` for
 * the server itself), with that server's credentials from the environment; `as: 'coordinator'`
 * takes the coordinator's (MESH_<SITE>_REPLICATION_*, see config/credentials.ts) for writes that
 * carry others' work.
 */
export function openSiteDatabase(
  config: MeshConfig,
  site: SiteConfig,
  options: { database?: string; retry?: RetryMode; batchWrites?: boolean; signal?: AbortSignal; logger?: Logger; as?: 'site' | 'coordinator' } = {},
): Database {
  const { database, as, ...rest } = options;
  const credentials = as === 'coordinator' ? replicationCredentialsFor(site.credentials_of) : credentialsFor(site.credentials_of);
  return new Database({
    url: site.server,
    database: database ?? config.database,
    credentials,
    timeoutMs: config.server_timeout_s * 1000,
    maxAnswerBytes: config.server_max_answer_mib * 1024 * 1024,
    ...rest,
  });
}

export function defaultAgentName(site: string): string {
  return `${site}-${hostname()}-${process.pid}`;
}
