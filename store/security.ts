/**
 * The data database's `_security`: members are the mesh roles (core/roles.ts) of the config's
 * sites, so that `_users` accounts with those roles may read and write it (a CouchDB 3
 * database without members admits admins only). Written only when it differs.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Database } from './database.js';
import { MeshError, isMeshError } from '../core/errors.js';
import { memberRoles } from '../core/roles.js';

export interface SecurityObject {
  admins: { names: string[]; roles: string[] };
  members: { names: string[]; roles: string[] };
}

/** What push writes: the mesh roles as members, the admins and member names already there kept. */
export function meshSecurity(sites: readonly string[], current: Partial<SecurityObject> = {}): SecurityObject {
  const roles = [...new Set([...(current.members?.roles ?? []), ...memberRoles(sites)])].sort();
  return {
    admins: { names: current.admins?.names ?? [], roles: current.admins?.roles ?? [] },
    members: { names: current.members?.names ?? [], roles },
  };
}

export interface SecurityPushResult {
  changed: boolean;
  security: SecurityObject;
}

export async function pushSecurity(db: Database, sites: readonly string[]): Promise<SecurityPushResult> {
  try {
    const current =
      (await db.request<Partial<SecurityObject>>('read _security', {
        path: '_security',
        shape: (a) => a !== null && typeof a === 'object' && !Array.isArray(a),
      })) ?? {};
    const wanted = meshSecurity(sites, current);
    if (isDeepStrictEqual(JSON.parse(JSON.stringify(current)), wanted)) return { changed: false, security: wanted };
    await db.request('write _security', { method: 'PUT', path: '_security', body: wanted });
    return { changed: true, security: wanted };
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN')) {
      throw new MeshError(error.code, `${error.message}: writing _security needs the server's admin credentials (MESH_<SITE>_USER/_PASSWORD)`, {
        cause: error,
      });
    }
    throw error;
  }
}
