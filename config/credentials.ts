import { readFileSync } from 'node:fs';
import { MeshError } from '../core/errors.js';

export interface Credentials {
  user: string;
  password: string;
}

/** `modane` → `MESH_MODANE`; anything that is not a letter or digit becomes `_`. */
export function credentialPrefix(site: string): string {
  return `MESH_${site.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/**
 * A site's server credentials, from `MESH_<SITE>_USER` plus `MESH_<SITE>_PASSWORD` or
 * `MESH_<SITE>_PASSWORD_FILE` (a file whose first line is the password). Never from a config file.
 * Returns undefined when no user is set (an open server).
 */
export function credentialsFor(site: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const prefix = credentialPrefix(site);
  const user = env[`${prefix}_USER`];
  if (!user) return undefined;
  let password = env[`${prefix}_PASSWORD`];
  const file = env[`${prefix}_PASSWORD_FILE`];
  if (password === undefined && file) {
    try {
      password = readFileSync(file, 'utf8').split(/\r?\n/)[0];
    } catch (cause) {
      throw new MeshError('CREDENTIALS_MISSING', `${prefix}_PASSWORD_FILE names ${file}, which cannot be read`, { cause });
    }
  }
  if (!password) {
    throw new MeshError('CREDENTIALS_MISSING', `${prefix}_USER is set but neither ${prefix}_PASSWORD nor ${prefix}_PASSWORD_FILE gives a password`);
  }
  return { user, password };
}

/**
 * The account a replication job of the coordinator logs in with on a site's server:
 * `MESH_<SITE>_REPLICATION_USER` plus `_PASSWORD` or `_PASSWORD_FILE`, else the site's own
 * credentials. It must hold the `mesh-coordinator` role: the server's write rules let only that
 * role (and the embedded server's admin party) carry other accounts' writes, and a server admin
 * is not enough.
 */
export function replicationCredentialsFor(site: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  return credentialsFor(`${site}_replication`, env) ?? credentialsFor(site, env);
}

/**
 * Credentials of the optional NATS server, from `MESH_NATS_USER` plus `MESH_NATS_PASSWORD` or
 * `MESH_NATS_PASSWORD_FILE`; never from the NATS URL. Undefined when no user is set.
 */
export function natsCredentials(env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  return credentialsFor('nats', env);
}

/**
 * The user and password file of a site's credentials when they come from
 * `MESH_<SITE>_PASSWORD_FILE`: what a batch job may be told (a path, never the password).
 */
export function passwordFileFor(site: string, env: NodeJS.ProcessEnv = process.env): { user: string; password_file: string } | undefined {
  const prefix = credentialPrefix(site);
  const user = env[`${prefix}_USER`];
  const file = env[`${prefix}_PASSWORD_FILE`];
  return user && file && env[`${prefix}_PASSWORD`] === undefined ? { user, password_file: file } : undefined;
}

/** The environment `credentialsFor` reads, rebuilt from a user and a password file. */
export function passwordFileEnv(site: string, source: { user: string; password_file: string }): NodeJS.ProcessEnv {
  const prefix = credentialPrefix(site);
  return { [`${prefix}_USER`]: source.user, [`${prefix}_PASSWORD_FILE`]: source.password_file };
}
