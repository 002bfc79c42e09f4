/**
 * `mesh simulate` with server admins (MESH_MODANE_USER/_PASSWORD, MESH_KIT_USER/_PASSWORD): each
 * process gets an account of its own on both servers, as a deployment would: one agent account
 * per site and an operator for the status page. Passwords are random and live only in 0600
 * files (`MESH_<SITE>_PASSWORD_FILE`), never in a command line or a log. The coordinator keeps
 * the admin's credentials: it creates the database, pushes the design documents and `_security`
 * and writes the `_replicator` jobs, all admin-only on a CouchDB 3 server; the jobs themselves
 * log in as a `mesh-coordinator` account (`MESH_<SITE>_REPLICATION_USER`), since the write rules
 * let no admin carry another account's claims and results.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentialPrefix, credentialsFor } from '../config/credentials.js';
import { Database } from '../store/database.js';
import { COORDINATOR_ROLE, OPERATOR_ROLE, agentRole } from '../core/roles.js';
import { upsertAccount } from './accounts.js';

export type SimulatedProcess = 'modane-agent' | 'lyon-agent' | 'operator' | 'replication';

const ACCOUNTS: Record<SimulatedProcess, { name: string; role: string }> = {
  'modane-agent': { name: 'sim-modane-agent', role: agentRole('modane') },
  'lyon-agent': { name: 'sim-lyon-agent', role: agentRole('lyon') },
  operator: { name: 'sim-operator', role: OPERATOR_ROLE },
  // The replication jobs carry every account's writes: only the coordinator role may.
  replication: { name: 'sim-coordinator', role: COORDINATOR_ROLE },
};

const SERVER_SITES = ['modane', 'kit'] as const;

export interface SimulationAccounts {
  /** The account of a process as `MESH_<SERVER>_USER` / `_PASSWORD_FILE` for both servers. */
  env(process: SimulatedProcess): Record<string, string>;
  /** The coordinator's replication account, as `MESH_<SERVER>_REPLICATION_USER` / `_PASSWORD_FILE`. */
  replicationEnv(): Record<string, string>;
  account(process: SimulatedProcess): { user: string; password_file: string };
}

/** `base` with the credentials of `account` in place of any other for the servers (no password variable left). */
export function withAccount(base: NodeJS.ProcessEnv, account: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const site of SERVER_SITES) {
    const prefix = credentialPrefix(site);
    delete env[`${prefix}_PASSWORD`];
    delete env[`${prefix}_PASSWORD_FILE`];
  }
  return { ...env, ...account };
}

/** `MESH_<SERVER><suffix>_USER` / `_PASSWORD_FILE` naming one account for both servers. */
function accountEnv(name: string, passwordFile: string, suffix: '' | '_replication'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const site of SERVER_SITES) {
    const prefix = credentialPrefix(`${site}${suffix}`);
    out[`${prefix}_USER`] = name;
    out[`${prefix}_PASSWORD_FILE`] = passwordFile;
  }
  return out;
}

/** Creates the accounts on both servers; undefined when the servers have no admin (nothing to separate). */
export async function createSimulationAccounts(
  servers: Record<(typeof SERVER_SITES)[number], string>,
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<SimulationAccounts | undefined> {
  const admins = SERVER_SITES.map((site) => ({ site, admin: credentialsFor(site, env) }));
  if (admins.some((a) => !a.admin)) return undefined;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = {} as Record<SimulatedProcess, string>;
  for (const [process, { name, role }] of Object.entries(ACCOUNTS) as Array<[SimulatedProcess, { name: string; role: string }]>) {
    const password = randomBytes(24).toString('base64url');
    files[process] = join(dir, `${name}.password`);
    await writeFile(files[process], `${password}\n`, { mode: 0o600 });
    await chmod(files[process], 0o600);
    for (const { site, admin } of admins)
      await upsertAccount(new Database({ url: servers[site], database: '_users', credentials: admin }), name, password, [role]);
  }
  const account = (process: SimulatedProcess) => ({ user: ACCOUNTS[process].name, password_file: files[process] });
  return {
    account,
    env: (process) => accountEnv(ACCOUNTS[process].name, files[process], ''),
    replicationEnv: () => accountEnv(ACCOUNTS.replication.name, files.replication, '_replication'),
  };
}
