/**
 * The checks of one server a site's processes talk to: reachable, the account authorised and
 * holding a role the process needs (`GET /_session`), the database readable through `_security`,
 * the design documents as the config generates them, the coordinator's replication account, and
 * the server's clock against this machine's.
 */
import { type Credentials, credentialPrefix, credentialsFor, replicationCredentialsFor } from '../../config/credentials.js';
import type { MeshConfig } from '../../config/types.js';
import { errorMessage, isMeshError } from '../../core/errors.js';
import { type UserContext, isAdminParty } from '../../core/roles.js';
import { Database } from '../../store/database.js';
import { designDocuments, designState } from '../../store/designs.js';
import { type ServerClock, clockOffsetBounds, serverClock } from '../../store/server-clock.js';
import { type Check, failure, pass } from './check.js';
import type { ServerScope } from './scope.js';

/**
 * How far this machine's clock may be from a server's: a third of the shortest lease. Leases are
 * renewed every third of their length; a clock that far off makes another site see a live claim
 * lapse a third earlier, which leaves the last third for replication and the renewal itself.
 */
export function clockToleranceS(config: MeshConfig): number {
  return Math.min(...config.steps.map((s) => s.lease_s)) / 3;
}

/** The clock line of a server: FAIL only when the offset is surely beyond the tolerance (the header has whole seconds). */
export function clockCheck(what: string, clock: ServerClock, toleranceS: number): Check {
  const bounds = clockOffsetBounds(clock);
  if (!bounds)
    return failure(what, 'the server sent no Date header', 'a proxy in front of the server may strip it; check the clocks by hand (both should run NTP)');
  const atLeastMs = bounds.low > 0 ? bounds.low : bounds.high < 0 ? -bounds.high : 0;
  const estimate = ((bounds.low + bounds.high) / 2 / 1000).toFixed(1);
  const detail = `offset ≈ ${Number(estimate) >= 0 ? '+' : ''}${estimate} s (server − here), tolerance ${toleranceS.toFixed(1)} s (a third of the shortest lease)`;
  if (atLeastMs / 1000 > toleranceS)
    return failure(
      what,
      detail,
      'synchronise the clocks (NTP: systemd-timesyncd, chrony) on this machine and the server; leases are judged by each side’s clock',
    );
  return pass(what, detail);
}

const LOCKOUT = '5 failed logins lock the account for 5 minutes: fix it before trying again';

function describeUser(user: UserContext): string {
  return `${user.name ?? '(anonymous)'} (roles ${user.roles.length ? user.roles.join(', ') : 'none'})`;
}

function roleFix(scope: ServerScope, user: string): string {
  const agent = scope.roles.find((r) => r.startsWith('mesh-agent:'));
  if (agent)
    return `give the process an account with role ${agent}: mesh users add ${user} --role agent --site ${agent.slice('mesh-agent:'.length)} --server ${scope.server.name}`;
  return `use ${scope.server.name}'s server admin for this process (CouchDB's admin account)`;
}

async function session(url: string, credentials: Credentials | undefined, timeoutMs: number): Promise<UserContext> {
  return new Database({ url, database: '', credentials, timeoutMs }).session();
}

export async function checkServer(config: MeshConfig, scope: ServerScope, env: NodeJS.ProcessEnv, options: { timeoutMs: number }): Promise<Check[]> {
  const { server } = scope;
  const what = `server ${server.name} ${server.server}`;
  const prefix = credentialPrefix(server.credentials_of);
  let credentials: Credentials | undefined;
  let unusable: unknown;
  try {
    credentials = credentialsFor(server.credentials_of, env);
  } catch (error) {
    unusable = error;
  }
  let clock: ServerClock;
  try {
    // Anonymous first: CouchDB answers `GET /` to anyone, so "unreachable" and "refused" stay apart
    // (a server with require_valid_user answers 401: then as the account).
    clock = await serverClock(new Database({ url: server.server, database: '', timeoutMs: options.timeoutMs })).catch((error: unknown) =>
      credentials && isMeshError(error, 'UNAUTHORIZED')
        ? serverClock(new Database({ url: server.server, database: '', credentials, timeoutMs: options.timeoutMs }))
        : Promise.reject(error),
    );
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN'))
      return [
        failure(what, `refused GET /: ${error.reason ?? errorMessage(error)}`, `check ${prefix}_USER and the password in ${prefix}_PASSWORD_FILE; ${LOCKOUT}`),
      ];
    return [
      failure(
        what,
        `unreachable: ${errorMessage(error)}`,
        `check sites.${server.name}.server, that the server runs, and that this machine may reach it (firewall, VPN)`,
      ),
    ];
  }
  const clockLine = clockCheck(`clock of ${server.name}`, clock, clockToleranceS(config));
  const checks: Check[] = [];
  if (unusable)
    return [failure(what, errorMessage(unusable), `give ${prefix}_USER and a readable ${prefix}_PASSWORD_FILE (the env file mesh deploy wrote)`), clockLine];
  let user: UserContext;
  try {
    user = await session(server.server, credentials, options.timeoutMs);
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN'))
      return [
        failure(
          what,
          `${credentials?.user ?? 'no account'} refused: ${error.reason ?? errorMessage(error)}`,
          `check ${prefix}_USER and the password in ${prefix}_PASSWORD_FILE; ${LOCKOUT}`,
        ),
        clockLine,
      ];
    return [failure(what, `GET /_session failed: ${errorMessage(error)}`, 'check that the URL is a CouchDB server'), clockLine];
  }
  const vendor = (clock.welcome.vendor as { name?: unknown } | undefined)?.name;
  const version = typeof clock.welcome.version === 'string' ? ` (${typeof vendor === 'string' ? `${vendor} ` : ''}${clock.welcome.version})` : '';
  if (!credentials) {
    if (isAdminParty(user)) checks.push(pass(what, `reachable${version}; open server without accounts (the embedded server's admin party, loopback only)`));
    else
      return [
        failure(
          what,
          `reachable${version}, but ${prefix}_USER is not set: requests go anonymous`,
          `give ${prefix}_USER and ${prefix}_PASSWORD_FILE (the env file mesh deploy wrote)`,
        ),
        clockLine,
      ];
  } else if (user.name === null) {
    return [
      failure(what, `reachable${version}, but the server took ${credentials.user} for anonymous`, `check ${prefix}_USER and its password; ${LOCKOUT}`),
      clockLine,
    ];
  } else if (!scope.roles.some((r) => user.roles.includes(r))) {
    return [
      failure(what, `logged in as ${describeUser(user)}; this site's processes need one of: ${scope.roles.join(', ')}`, roleFix(scope, user.name)),
      clockLine,
    ];
  } else checks.push(pass(what, `reachable${version}; logged in as ${describeUser(user)}`));

  const db = new Database({ url: server.server, database: config.database, credentials, timeoutMs: options.timeoutMs });
  const dbWhat = `database ${config.database} on ${server.name}`;
  let dbOk = false;
  try {
    const info = await db.info();
    checks.push(pass(dbWhat, `readable (${info.doc_count} documents)`));
    dbOk = true;
  } catch (error) {
    if (isMeshError(error, 'NOT_FOUND'))
      checks.push(
        failure(
          dbWhat,
          'does not exist',
          `the coordinator creates it at its first round; or: mesh couchapp push --site ${server.name} (with the server admin)`,
        ),
      );
    else if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN'))
      checks.push(
        failure(
          dbWhat,
          `refused: ${error.reason ?? errorMessage(error)}`,
          `its _security must admit the mesh roles: mesh couchapp push --site ${server.name} (or server/security.json of mesh deploy)`,
        ),
      );
    else checks.push(failure(dbWhat, errorMessage(error), 'check the server'));
  }
  if (dbOk) checks.push(await couchappCheck(config, db, server.name));
  if (scope.replication) checks.push(await replicationCheck(scope, env, user, credentials, options.timeoutMs));
  checks.push(clockLine);
  return checks;
}

async function couchappCheck(config: MeshConfig, db: Database, site: string): Promise<Check> {
  const what = `couchapp on ${site}`;
  try {
    const states = await Promise.all(designDocuments(config).map(async (d) => ({ id: d._id, state: await designState(db, d) })));
    const off = states.filter((s) => s.state !== 'current');
    if (off.length === 0) return pass(what, `${states.map((s) => s.id).join(', ')} as this config generates them`);
    return failure(
      what,
      off.map((s) => `${s.id} ${s.state === 'missing' ? 'missing' : 'differs from the generated one'}`).join(', '),
      `mesh couchapp push --site ${site} (with the server admin), or let the coordinator's next round push it; every site must run the same config`,
    );
  } catch (error) {
    return failure(what, errorMessage(error), 'check the server');
  }
}

async function replicationCheck(
  scope: ServerScope,
  env: NodeJS.ProcessEnv,
  user: UserContext,
  site: Credentials | undefined,
  timeoutMs: number,
): Promise<Check> {
  const { server } = scope;
  const what = `replication account on ${server.name}`;
  const prefix = `${credentialPrefix(server.credentials_of)}_REPLICATION`;
  let credentials: Credentials | undefined;
  try {
    credentials = replicationCredentialsFor(server.credentials_of, env);
  } catch (error) {
    return failure(what, errorMessage(error), `give ${prefix}_USER and a readable ${prefix}_PASSWORD_FILE`);
  }
  if (!credentials) {
    return isAdminParty(user)
      ? pass(what, 'open server: the replication jobs need no account')
      : failure(what, 'none', `give ${prefix}_USER and ${prefix}_PASSWORD_FILE: an account with role mesh-coordinator`);
  }
  let replicator = user;
  if (credentials.user !== site?.user || credentials.password !== site?.password) {
    try {
      replicator = await session(server.server, credentials, timeoutMs);
    } catch (error) {
      return failure(
        what,
        `${credentials.user} refused: ${isMeshError(error) ? (error.reason ?? error.message) : errorMessage(error)}`,
        `check ${prefix}_USER and its password; ${LOCKOUT}`,
      );
    }
  }
  if (replicator.roles.includes('mesh-coordinator')) return pass(what, `the jobs log in as ${describeUser(replicator)}`);
  return failure(
    what,
    `the jobs would log in as ${describeUser(replicator)}: only mesh-coordinator may carry other accounts' writes, a server admin may not`,
    `give ${prefix}_USER and ${prefix}_PASSWORD_FILE an account with role coordinator (mesh users add coordinator --role coordinator)`,
  );
}
