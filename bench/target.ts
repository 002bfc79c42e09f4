/**
 * The server a bench section measures: the embedded server it starts (the default), or any
 * CouchDB-compatible server given with `--server URL` (for example Apache CouchDB), where the
 * section creates its own uniquely named databases and deletes them at the end. Credentials
 * come from the environment only, as the conformance suite reads them: `COUCHDB_USER` and
 * `COUCHDB_PASSWORD` (or `COUCHDB_PASSWORD_FILE`, a file whose first line is the password).
 * Those are the server admin's: the generated write rules let no admin carry an agent's claims
 * and results, so, as a deployment does, the run creates an agent account of its own (role
 * `mesh-agent:<site>`, a random password in a 0600 file), admits it in each database's
 * `_security`, writes every data document as that account and deletes it at the end. The
 * agents the bench starts get it the way real agents do: `MESH_<SITE>_USER` and
 * `MESH_<SITE>_PASSWORD_FILE` in their environment (config/credentials.ts), never on a
 * command line.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { upsertAccount } from '../cli/accounts.js';
import { startServerChild } from '../cli/processes.js';
import { credentialPrefix } from '../config/credentials.js';
import { deleteAccount } from '../store/accounts.js';
import { pushSecurity } from '../store/security.js';
import { MeshError } from '../core/errors.js';
import { agentRole } from '../core/roles.js';
import { Database, type ServerCredentials } from '../store/database.js';

/** A database of the run, as the agents' account sees it (`db`) and as the admin (`admin`: design documents, `_security`). */
export interface BenchDatabase {
  db: Database;
  admin: Database;
}

export interface BenchTarget {
  url: string;
  /** `embedded` (started by the bench) or `external` (`--server`). */
  kind: 'embedded' | 'external';
  credentials?: ServerCredentials;
  /** The account the data is written as: the run's agent account, or none (the embedded server's admin party, an open server). */
  writer: string | null;
  /** A database of this run: `name` prefixed with the run's unique prefix, created, the agent account admitted. */
  database(name: string): Promise<BenchDatabase>;
  /** The environment of an agent process of site `site`: the credentials as real agents get them, nothing of the bench's own. */
  agentEnv(site: string, extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Deletes the databases this run created (external) or stops the server (embedded). Idempotent. */
  close(): Promise<void>;
}

const ENV_NAMES = ['COUCHDB_USER', 'COUCHDB_PASSWORD', 'COUCHDB_PASSWORD_FILE'];

/** `COUCHDB_USER` + `COUCHDB_PASSWORD` or `COUCHDB_PASSWORD_FILE`; undefined without a user (an open server). */
export function benchCredentials(env: NodeJS.ProcessEnv = process.env): (ServerCredentials & { passwordFile?: string }) | undefined {
  const user = env.COUCHDB_USER;
  if (!user) return undefined;
  const file = env.COUCHDB_PASSWORD_FILE;
  let password = env.COUCHDB_PASSWORD;
  if (password === undefined && file) {
    try {
      password = readFileSync(file, 'utf8').split(/\r?\n/)[0];
    } catch (cause) {
      throw new MeshError('CREDENTIALS_MISSING', `COUCHDB_PASSWORD_FILE names ${file}, which cannot be read`, { cause });
    }
  }
  if (!password) throw new MeshError('CREDENTIALS_MISSING', 'COUCHDB_USER is set but neither COUCHDB_PASSWORD nor COUCHDB_PASSWORD_FILE gives a password');
  return { user, password, ...(env.COUCHDB_PASSWORD === undefined && file ? { passwordFile: file } : {}) };
}

/** The server URL as shown in a report: no credentials, even if someone put them in it. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable URL)';
  }
}

function agentEnvironment(credentials: { user: string; passwordFile: string } | undefined, site: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ENV_NAMES) delete env[name];
  const prefix = credentialPrefix(site);
  for (const suffix of ['_USER', '_PASSWORD', '_PASSWORD_FILE']) delete env[`${prefix}${suffix}`];
  if (credentials) {
    env[`${prefix}_USER`] = credentials.user;
    env[`${prefix}_PASSWORD_FILE`] = credentials.passwordFile;
  }
  return env;
}

/** Opens the target: `server` given → that server, with the environment's credentials; else a new embedded server in `dataDir`. `work`: a private folder (the agent account's password file). */
export async function openTarget(options: { server?: string; dataDir: string; logFile: number; work: string; site: string }): Promise<BenchTarget> {
  if (options.server && /^[a-z]+:\/\/[^/]*@/i.test(options.server))
    throw new MeshError('BAD_INPUT', '--server: put no credentials in the URL; set COUCHDB_USER and COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE)');
  const embedded = options.server ? undefined : await startServerChild('bench', options.dataDir, { logFile: options.logFile });
  const url = options.server ?? (embedded?.url as string);
  const credentials = options.server ? benchCredentials() : undefined;
  // Unique per run: several runs (or a crashed one's leftovers) never share a database or an account.
  const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const prefix = `bench_${runId}_`;
  let agent: { user: string; password: string; passwordFile: string } | undefined;
  const users = credentials ? new Database({ url, database: '_users', credentials }) : undefined;
  if (users) {
    agent = {
      user: `bench-agent-${runId.replace(/_/g, '-')}`,
      password: randomBytes(18).toString('base64url'),
      passwordFile: join(options.work, 'agent-password'),
    };
    await writeFile(agent.passwordFile, `${agent.password}\n`, { mode: 0o600 });
    await upsertAccount(users, agent.user, agent.password, [agentRole(options.site)]);
  }
  const created: Database[] = [];
  let closed: Promise<void> | undefined;
  return {
    url,
    kind: embedded ? 'embedded' : 'external',
    credentials,
    writer: agent?.user ?? null,
    async database(name) {
      const admin = new Database({ url, database: `${prefix}${name}`, credentials });
      await admin.ensure();
      created.push(admin);
      if (!agent) return { db: admin, admin };
      await pushSecurity(admin, [options.site]);
      return { db: new Database({ url, database: admin.name, credentials: { user: agent.user, password: agent.password } }), admin };
    },
    agentEnv: (site, extra = {}) => agentEnvironment(agent, site, extra),
    close: () =>
      (closed ??= (async () => {
        if (embedded) return embedded.stop();
        for (const db of created) await db.destroy();
        if (users && agent) await deleteAccount(users, agent.user);
      })()),
  };
}
