/** The servers of a mesh, and how the coordinator opens a database on one of them. */
import type { MeshConfig, SiteConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { isMeshError } from '../core/errors.js';

/** A refusal (401/403) reads "not authorised: <the server's reason>", never "unreachable": the server is up. */
export function notAuthorised(error: unknown): string | undefined {
  if (!isMeshError(error, 'UNAUTHORIZED') && !isMeshError(error, 'FORBIDDEN')) return undefined;
  return `not authorised: ${error.reason ?? error.message}`;
}

/**
 * Opens `database` on `site`'s server with that server's credentials; without `database`,
 * the mesh's data database. `''` names the server itself (`GET /`, `/_scheduler/…`).
 */
export type OpenDatabase = (site: SiteConfig, database?: string) => Database;

/** One entry per distinct server: the site that owns it (its credentials) names it. */
export function distinctServers(config: MeshConfig): SiteConfig[] {
  const byUrl = new Map<string, SiteConfig>();
  for (const site of Object.values(config.sites)) {
    const known = byUrl.get(site.server);
    if (!known || (known.credentials_of !== known.name && site.credentials_of === site.name)) byUrl.set(site.server, site);
  }
  return [...byUrl.values()];
}

/** The distinct-server entry for the server `site` talks to (lyon → kit when they share a server). */
export function serverOf(config: MeshConfig, site: SiteConfig): SiteConfig {
  return distinctServers(config).find((s) => s.server === site.server) ?? site;
}
