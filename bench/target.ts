/**
 * The server a bench section measures: the embedded server it starts (the default), or any
 * CouchDB-compatible server given with `--server URL` (for example Apache CouchDB), where the
 * section creates its own uniquely named databases and deletes them at the end. Credentials
 * come from the environment only, as the conformance suite reads them: `COUCHDB_USER` and
 * `COUCHDB_PASSWORD` (or `COUCHDB_PASSWORD_FILE`, a file whose first line is the password).
 * The agents the bench starts get them the way real agents do: `MESH_<SITE>_USER` and
 * `MESH_<SITE>_PASSWORD(_FILE)` in their environment (config/credentials.ts), never on a
 * command line.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { startServerChild } from '../cli/processes.js';
import { credentialPrefix } from '../config/credentials.js';
import { MeshError } from '../core/errors.js';
import { Database, type ServerCredentials } from '../store/database.js';

export interface BenchTarget {
  url: string;
  /** `embedded` (started by the bench) or `external` (`--server`). */
  kind: 'embedded' | 'external';
  credentials?: ServerCredentials;
  /** A database of this run: `name` prefixed with the run's unique prefix, created. */
  database(name: string): Promise<Database>;
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

function agentEnvironment(credentials: (ServerCredentials & { passwordFile?: string }) | undefined, site: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ENV_NAMES) delete env[name];
  const prefix = credentialPrefix(site);
  for (const suffix of ['_USER', '_PASSWORD', '_PASSWORD_FILE']) delete env[`${prefix}${suffix}`];
  if (credentials) {
    env[`${prefix}_USER`] = credentials.user;
    if (credentials.passwordFile) env[`${prefix}_PASSWORD_FILE`] = credentials.passwordFile;
    else env[`${prefix}_PASSWORD`] = credentials.password;
  }
  return env;
}

/** Opens the target: `server` given → that server, with the environment's credentials; else a new embedded server in `dataDir`. */
export async function openTarget(options: { server?: string; dataDir: string; logFile: number }): Promise<BenchTarget> {
  if (options.server && /^[a-z]+:\/\/[^/]*@/i.test(options.server)) throw new MeshError('BAD_INPUT', '--server: put no credentials in the URL; set COUCHDB_USER and COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE)');
  const embedded = options.server ? undefined : await startServerChild('bench', options.dataDir, { logFile: options.logFile });
  const url = options.server ?? (embedded?.url as string);
  const credentials = options.server ? benchCredentials() : undefined;
  // Unique per run: several runs (or a crashed one's leftovers) never share a database.
  const prefix = `bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}_`;
  const created: Database[] = [];
  let closed: Promise<void> | undefined;
  return {
    url,
    kind: embedded ? 'embedded' : 'external',
    credentials,
    async database(name) {
      const db = new Database({ url, database: `${prefix}${name}`, credentials });
      await db.ensure();
      created.push(db);
      return db;
    },
    agentEnv: (site, extra = {}) => agentEnvironment(credentials, site, extra),
    close: () =>
      (closed ??= (async () => {
        if (embedded) return embedded.stop();
        for (const db of created) {
          await db.request(`delete database ${db.name}`, { method: 'DELETE' }).catch((error: unknown) => {
            if (!(error instanceof MeshError && error.code === 'NOT_FOUND')) throw error;
          });
        }
      })()),
  };
}
