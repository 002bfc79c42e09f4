/**
 * `mesh doctor --site S [--unit U]`: checks a deployed site from its machine, one line per check:
 * the config, each server its processes talk to (reachable, the account authorised with the role
 * it needs, the database admitted, the couchapp current, the replication account), the clocks
 * against the servers', the SSH targets (pinned host key, key accepted), the batch system, the
 * folders, NATS when configured. Status 0 when every check passes, 1 when one fails, 2 when the
 * config itself is invalid.
 */
import { userInfo } from 'node:os';
import { credentialPrefix } from '../../config/credentials.js';
import { loadMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { errorMessage } from '../../core/errors.js';
import { designDocuments } from '../../store/designs.js';
import { type Check, failure, pass } from './check.js';
import { checkBatch, checkPath, checkSecretFile } from './host.js';
import { checkNats, checkSsh } from './remote.js';
import { type DoctorScope, type DoctorUnit, doctorScope } from './scope.js';
import { checkServer } from './servers.js';

export interface DoctorOptions {
  configFile: string;
  site: string;
  unit?: DoctorUnit;
  /** The environment the checked processes get (credentials, PATH, SLURM_CONF…). */
  env: NodeJS.ProcessEnv;
  /** Bound of each network check (default 10 s). */
  timeoutMs?: number;
}

export interface DoctorReport {
  checks: Check[];
  /** 0 all passed, 1 a check failed, 2 the config is invalid. */
  status: 0 | 1 | 2;
}

const DEFAULT_TIMEOUT_MS = 10_000;

function account(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
}

/** The modes of the password files the checked processes read. */
async function secretFiles(scope: DoctorScope, config: MeshConfig, env: NodeJS.ProcessEnv): Promise<Check[]> {
  const prefixes = new Set<string>();
  for (const s of scope.servers) {
    prefixes.add(credentialPrefix(s.server.credentials_of));
    if (s.replication) prefixes.add(credentialPrefix(`${s.server.credentials_of}_replication`));
  }
  if (scope.nats) prefixes.add(credentialPrefix('nats'));
  const files = [...prefixes].flatMap((p) =>
    env[`${p}_PASSWORD_FILE`] && env[`${p}_PASSWORD`] === undefined ? [[p, env[`${p}_PASSWORD_FILE`] as string]] : [],
  );
  const bad = (await Promise.all(files.map(([p, file]) => checkSecretFile(file, `password file ${p}_PASSWORD_FILE`)))).filter(
    (c): c is Check => c !== undefined,
  );
  if (bad.length > 0 || files.length === 0) return bad;
  return [pass('password files', `${[...new Set(files.map(([, f]) => f))].join(', ')}: readable by their owner only`)];
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let config: MeshConfig;
  try {
    config = loadMeshConfig(options.configFile);
    designDocuments(config);
  } catch (error) {
    return {
      checks: [failure(`config ${options.configFile}`, errorMessage(error), 'correct the config (every problem is listed above), then run mesh doctor again')],
      status: 2,
    };
  }
  const scope = doctorScope(config, options.site, options.unit);
  const env = options.env;
  const checks: Check[] = [
    pass(`config ${config.source}`, `valid; site ${scope.site.name}: ${scope.units.join(', ') || 'nothing'}${options.unit ? ' (--unit)' : ''}`),
    ...(await secretFiles(scope, config, env)),
  ];
  for (const server of await Promise.all(scope.servers.map((s) => checkServer(config, s, env, { timeoutMs })))) checks.push(...server);
  const who = account();
  for (const path of scope.paths) checks.push(await checkPath(path, who));
  if (scope.batch) checks.push(await checkBatch(scope.batch, env, timeoutMs));
  for (const ssh of await Promise.all(scope.ssh.map((s) => checkSsh(s, timeoutMs)))) checks.push(...ssh);
  if (scope.nats && config.nats) checks.push(await checkNats(config.nats.url, env, timeoutMs));
  return { checks, status: checks.every((c) => c.ok) ? 0 : 1 };
}
