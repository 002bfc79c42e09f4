import { readFileSync } from 'node:fs';
import { deepFreeze } from '../core/freeze.js';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DURATION_FORM, parseDuration } from '../core/duration.js';
import { BYTES_FORM, parseBytes } from '../core/bytes.js';
import { type BatchSystemName, WALLTIME_FORM, parseWalltime, walltimeInOptions } from './batch-walltime.js';
import { MeshError, errorMessage } from '../core/errors.js';
import { meshSchema } from './schema.js';
import { fileScopeProblems, isRunScope, parseRunSteps } from './run-steps.js';
import { stepNameClash } from './step-names.js';
import {
  METADATA_ARGUMENT_FORM,
  METADATA_PLACEHOLDERS,
  OUT_FORM,
  PLACEHOLDERS,
  PLACEHOLDER_FORM,
  metadataArgumentProblems,
  outTemplateProblems,
  runArgumentProblems,
} from './template.js';
import type { AgentTuning, AlertsConfig, BatchConfig, IngestConfig, MeshConfig, SiteConfig, SshTarget, StepConfig } from './types.js';
import { DATABASE_NAME, MAX_TIMER_S, NAME, Problems, checkSeconds, isObject, isPositiveInteger, originalDesignProblem, show, stepLimits } from './validate.js';

/** The placeholders of step templates (kept under its old name for callers). */
export const TEMPLATE_FIELDS = PLACEHOLDERS;

/** A step version: a plain word (it may be part of a path through {version}), compared in natural order. */
const STEP_VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** The agent waits this much longer than grace_s for its last writes (cli/commands/agent.ts). */
const GRACE_MARGIN_S = 5;

const SITE_KEYS = ['server', 'reachable', 'long_running', 'credentials_of', 'log_dir', 'may_run', 'ssh', 'batch', 'storage', 'mesh'] as const;
const STEP_KEYS = ['name', 'site', 'run', 'out', 'timeout_s', 'max_attempts', 'lease_s', 'executor', 'to', 'custody', 'scope', 'after', 'version'] as const;
const SSH_KEYS = ['host', 'port', 'user', 'identity_file', 'host_key_sha256'] as const;
const BATCH_KEYS = ['system', 'options', 'docs_per_job', 'mesh', 'max_jobs', 'walltime'] as const;

/** The Edelweiss profile shipped with the project, used when no config is named. */
export function defaultConfigPath(): string {
  // Compiled to dist/config/load.js; the profiles stay in sites/ at the repository root.
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'sites', 'edelweiss.json');
}

/** The config file named by `--config`, else `MESH_CONFIG`, else the Edelweiss profile. */
export function configPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return explicit ?? env.MESH_CONFIG ?? defaultConfigPath();
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new MeshError('CONFIG_INVALID', `cannot read ${what} ${file}: ${errorMessage(cause)}`, { cause });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new MeshError('CONFIG_INVALID', `${what} ${file} is not valid JSON: ${errorMessage(cause)}`, { cause });
  }
}

/** Reads, validates and freezes a mesh config. Every problem is reported at once, as CONFIG_INVALID. */
export function loadMeshConfig(file: string): MeshConfig {
  const raw = readJson(file, 'mesh config');
  return parseMeshConfig(raw, file);
}

export function parseMeshConfig(raw: unknown, source: string): MeshConfig {
  if (!isObject(raw)) throw new MeshError('CONFIG_INVALID', `mesh config ${source} is ${show(raw)}, expected a JSON object`);
  // convict merges `__proto__` away instead of calling it unknown: refuse it (at any depth) first.
  const prototypeKeys = prototypeKeyPaths(raw, '');
  if (prototypeKeys.length > 0)
    throw new MeshError('CONFIG_INVALID', `invalid configuration ${source}:\n  - ${prototypeKeys.map((k) => `${k} is not a known key`).join('\n  - ')}`);
  const schema = meshSchema();
  try {
    // convict cannot walk maps and lists of objects: those are checked below.
    const { sites: _sites, steps: _steps, targets: _targets, ...scalars } = raw;
    schema.load(scalars);
    schema.validate({ allowed: 'strict' });
  } catch (cause) {
    throw new MeshError('CONFIG_INVALID', `invalid configuration ${source}:\n  - ${errorMessage(cause).split('\n').join('\n  - ')}`, { cause });
  }
  const base = dirname(resolve(source));
  const problems = new Problems();

  const database = schema.get('database');
  if (!DATABASE_NAME.test(database)) problems.add('database', database, 'a CouchDB database name (lower case letter, then a-z 0-9 _$()+-/)');
  const docType = schema.get('doc_type');
  if (!docType) problems.add('doc_type', docType, 'a non-empty string');
  const originalDesign = schema.get('original_design');
  const originalDesignForm = originalDesignProblem(originalDesign);
  if (originalDesignForm) problems.add('original_design', originalDesign, originalDesignForm);

  const sites = parseSites(raw.sites, base, problems);
  const steps = parseSteps(raw.steps, sites, problems);
  const runSteps = parseRunSteps(raw.steps, sites, steps, problems);

  const ingest = schema.get('ingest');
  if (ingest.site && !sites[ingest.site]) problems.add('ingest.site', ingest.site, `one of the sites (${Object.keys(sites).join(', ')})`);
  // Absent and "" alike: show what the user wrote, not convict's default.
  if (!ingest.site) problems.add('ingest.site', written(raw, 'ingest', 'site'), 'the name of the site that catalogues DAQ files');
  checkSeconds(problems, 'ingest.quiet_s', ingest.quiet_s, { min: 0 });
  checkSeconds(problems, 'ingest.run_quiet_s', ingest.run_quiet_s, { min: 0 });
  try {
    const groups = new RegExp(ingest.pattern).source;
    if (!groups.includes('(?<run_name>') || !groups.includes('(?<file_number>'))
      problems.add('ingest.pattern', ingest.pattern, 'a regular expression with named groups (?<run_name>…) and (?<file_number>…)');
  } catch {
    problems.add('ingest.pattern', ingest.pattern, 'a valid regular expression');
  }
  // As written: convict merges an object into the default [] and would hide it.
  const metadataArgv = written(raw, 'ingest', 'metadata');
  const metadata = parseIngestMetadata({ metadata: metadataArgv === undefined ? [] : metadataArgv, metadata_timeout_s: ingest.metadata_timeout_s }, problems);

  const agent = schema.get('agent') as unknown as AgentTuning;
  for (const [key, value] of Object.entries(agent)) {
    checkSeconds(problems, `agent.${key}`, value, key === 'grace_s' ? { max: MAX_TIMER_S - GRACE_MARGIN_S } : {});
  }
  if (typeof agent.retry_base_s === 'number' && typeof agent.retry_cap_s === 'number' && agent.retry_cap_s < agent.retry_base_s)
    problems.add(
      'agent.retry_cap_s',
      agent.retry_cap_s,
      `at least agent.retry_base_s (${agent.retry_base_s}): the largest retry delay cannot be shorter than the first`,
    );
  const coordinator = schema.get('coordinator');
  // A coordinator.site the user did not write is checked as ingest.site, and reported there.
  const coordinatorSite = coordinator.site || ingest.site;
  if (coordinator.site && !sites[coordinator.site]) problems.add('coordinator.site', coordinator.site, `one of the sites (${Object.keys(sites).join(', ')})`);
  checkSeconds(problems, 'coordinator.interval_s', coordinator.interval_s);
  const targets = parseTargets(raw.targets, steps, problems);
  // The hook as written: convict turns an object such as {"argv": […]} into [] ("no hook") without a word.
  const hookWritten = written(raw, 'alerts', 'hook');
  const alerts = parseAlerts(
    { ...(schema.get('alerts') as unknown as AlertsInput), ...(hookWritten === undefined ? {} : { hook: hookWritten }) },
    agent.heartbeat_s,
    problems,
  );
  const serverTimeout = schema.get('server_timeout_s') as unknown as number;
  checkSeconds(problems, 'server_timeout_s', serverTimeout);
  const maxAnswer = schema.get('server_max_answer_mib') as unknown as number;
  if (!isPositiveInteger(maxAnswer) || maxAnswer > 4096) problems.add('server_max_answer_mib', maxAnswer, 'an integer from 1 to 4096 (MiB)');
  const natsUrl = schema.get('nats').url;
  if (natsUrl && !/^(nats|tls):\/\/[^/]+$|^[^/:]+:\d+$/.test(natsUrl))
    problems.add('nats.url', natsUrl, 'a NATS URL such as "nats://127.0.0.1:4222" (credentials come from the environment)');
  problems.throwIfAny(source);

  return deepFreeze({
    database,
    doc_type: docType,
    original_design: originalDesign,
    sites,
    ingest: { site: ingest.site, pattern: ingest.pattern, quiet_s: ingest.quiet_s as number, run_quiet_s: ingest.run_quiet_s as number, ...metadata },
    steps,
    run_steps: runSteps,
    agent: { ...agent },
    coordinator: { site: coordinatorSite, interval_s: coordinator.interval_s as number },
    targets,
    alerts,
    server_timeout_s: serverTimeout,
    server_max_answer_mib: maxAnswer,
    ...(natsUrl ? { nats: { url: natsUrl } } : {}),
    source,
  });
}

function parseSites(raw: unknown, base: string, problems: Problems): Record<string, SiteConfig> {
  const sites: Record<string, SiteConfig> = {};
  if (!isObject(raw) || Object.keys(raw).length === 0) {
    problems.add('sites', raw, 'an object mapping each site name to its profile');
    return sites;
  }
  for (const [name, value] of Object.entries(raw)) {
    const key = `sites.${name}`;
    if (!NAME.test(name)) problems.add(key, name, 'a site name of lower-case letters, digits, _ and -');
    const profile = typeof value === 'string' ? readProfile(value, base, key, problems) : value;
    if (!isObject(profile)) {
      if (profile !== undefined) problems.add(key, profile, 'a site profile object or the path of a JSON profile');
      continue;
    }
    problems.unknownKeys(key, profile, SITE_KEYS);
    const server = profile.server;
    if (typeof server !== 'string' || !isHttpUrl(server)) problems.add(`${key}.server`, server, 'an http(s) URL such as "http://127.0.0.1:5984"');
    else if (new URL(server).password || new URL(server).username)
      problems.add(
        `${key}.server`,
        '(a URL with credentials)',
        `a URL without credentials; put them in MESH_${name.toUpperCase()}_USER and _PASSWORD or _PASSWORD_FILE`,
      );
    for (const flag of ['reachable', 'long_running'] as const) {
      if (typeof profile[flag] !== 'boolean') problems.add(`${key}.${flag}`, profile[flag], 'true or false');
    }
    const credentialsOf = profile.credentials_of ?? name;
    if (typeof credentialsOf !== 'string') problems.add(`${key}.credentials_of`, credentialsOf, 'a site name');
    const logDir = profile.log_dir ?? join('logs', name);
    if (typeof logDir !== 'string') problems.add(`${key}.log_dir`, logDir, 'a directory path');
    const mayRun = profile.may_run;
    if (mayRun !== undefined && (!Array.isArray(mayRun) || !mayRun.every((s) => typeof s === 'string')))
      problems.add(`${key}.may_run`, mayRun, 'a list of step names');
    if (profile.storage !== undefined && typeof profile.storage !== 'string') problems.add(`${key}.storage`, profile.storage, 'a directory path');
    const mesh = profile.mesh ?? ['mesh'];
    if (!Array.isArray(mesh) || mesh.length === 0 || !mesh.every((a) => typeof a === 'string'))
      problems.add(
        `${key}.mesh`,
        mesh,
        'the mesh command on that site as an argument vector, e.g. ["/opt/couchmesh/bin/mesh", "--config", "/etc/couchmesh/mesh.json"]',
      );
    sites[name] = {
      name,
      server: typeof server === 'string' ? server.replace(/\/+$/, '') : '',
      reachable: profile.reachable === true,
      long_running: profile.long_running === true,
      credentials_of: String(credentialsOf),
      log_dir: resolve(base, String(logDir)),
      may_run: Array.isArray(mayRun) ? mayRun.map(String) : [],
      mesh: Array.isArray(mesh) ? mesh.map(String) : ['mesh'],
      ...(profile.ssh !== undefined ? { ssh: parseSsh(`${key}.ssh`, profile.ssh, base, problems) } : {}),
      ...(profile.batch !== undefined ? { batch: parseBatch(`${key}.batch`, profile.batch, problems) } : {}),
      ...(typeof profile.storage === 'string' ? { storage: resolve(base, profile.storage) } : {}),
    };
  }
  for (const [name, site] of Object.entries(sites)) {
    if (!sites[site.credentials_of] && site.credentials_of !== name) problems.add(`sites.${name}.credentials_of`, site.credentials_of, 'the name of a site');
  }
  return sites;
}

function parseSsh(key: string, raw: unknown, base: string, problems: Problems): SshTarget {
  if (!isObject(raw)) {
    problems.add(key, raw, 'an object { host, port, user, identity_file, host_key_sha256 }');
    return { host: '', port: 22, user: '', identity_file: '', host_key_sha256: '' };
  }
  problems.unknownKeys(key, raw, SSH_KEYS);
  const port = raw.port ?? 22;
  if (typeof raw.host !== 'string' || !raw.host) problems.add(`${key}.host`, raw.host, 'a host name or address');
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) problems.add(`${key}.port`, port, 'a port number');
  if (typeof raw.user !== 'string' || !raw.user) problems.add(`${key}.user`, raw.user, 'a user name');
  if (typeof raw.identity_file !== 'string' || !raw.identity_file)
    problems.add(`${key}.identity_file`, raw.identity_file, 'the path of a private key file (no password authentication)');
  if (typeof raw.host_key_sha256 !== 'string' || !/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(raw.host_key_sha256))
    problems.add(`${key}.host_key_sha256`, raw.host_key_sha256, 'the pinned host key fingerprint, "SHA256:…" as ssh-keygen -lf prints it');
  return {
    host: String(raw.host),
    port: Number(port),
    user: String(raw.user),
    identity_file: resolve(base, String(raw.identity_file)),
    host_key_sha256: String(raw.host_key_sha256),
  };
}

function parseBatch(key: string, raw: unknown, problems: Problems): BatchConfig {
  if (!isObject(raw)) {
    problems.add(key, raw, 'an object { system, options, docs_per_job, mesh }');
    return { system: 'slurm', options: [], docs_per_job: 1, mesh: [] };
  }
  problems.unknownKeys(key, raw, BATCH_KEYS);
  const options = raw.options ?? [];
  const perJob = raw.docs_per_job ?? 1;
  const mesh = raw.mesh ?? ['mesh'];
  if (raw.system !== 'slurm' && raw.system !== 'sge') problems.add(`${key}.system`, raw.system, '"slurm" or "sge"');
  if (!Array.isArray(options) || !options.every((o) => typeof o === 'string')) problems.add(`${key}.options`, options, 'a list of submission options');
  if (!isPositiveInteger(perJob) || perJob > 1000) problems.add(`${key}.docs_per_job`, perJob, 'an integer from 1 to 1000');
  if (!Array.isArray(mesh) || mesh.length === 0 || !mesh.every((o) => typeof o === 'string'))
    problems.add(`${key}.mesh`, mesh, 'the mesh command on the batch nodes as an argument vector, e.g. ["/opt/couchmesh/bin/mesh"]');
  const system = raw.system === 'sge' ? 'sge' : 'slurm';
  const maxJobs = raw.max_jobs;
  if (maxJobs !== undefined && (!isPositiveInteger(maxJobs) || maxJobs > 100_000))
    problems.add(`${key}.max_jobs`, maxJobs, 'an integer from 1 to 100000 (leave it out for no limit)');
  const walltime = batchWalltime(key, system, raw.walltime, Array.isArray(options) ? options.map(String) : [], problems);
  return {
    system,
    options: Array.isArray(options) ? options.map(String) : [],
    docs_per_job: Number(perJob),
    mesh: Array.isArray(mesh) ? mesh.map(String) : [],
    ...(maxJobs !== undefined ? { max_jobs: Number(maxJobs) } : {}),
    ...(walltime !== undefined ? { walltime_s: walltime } : {}),
  };
}

/** `batch.walltime`, or the walltime `options` already ask for; both given must agree. */
function batchWalltime(key: string, system: BatchSystemName, raw: unknown, options: string[], problems: Problems): number | undefined {
  const inOptions = walltimeInOptions(system, options);
  if (inOptions && inOptions.seconds === undefined) problems.add(`${key}.options`, inOptions.option, `a walltime ${system} accepts`);
  if (raw === undefined) return inOptions?.seconds;
  const seconds = parseWalltime(raw);
  if (seconds === undefined) {
    problems.add(`${key}.walltime`, raw, WALLTIME_FORM);
    return undefined;
  }
  if (inOptions?.seconds !== undefined && inOptions.seconds !== seconds)
    problems.add(`${key}.walltime`, raw, `the walltime that ${key}.options asks for (${inOptions.option}), or left out`);
  return seconds;
}

function readProfile(path: string, base: string, key: string, problems: Problems): unknown {
  try {
    return readJson(isAbsolute(path) ? path : resolve(base, path), 'site profile');
  } catch (error) {
    problems.list.push(`${key}: ${errorMessage(error)}`);
    return undefined;
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function parseSteps(raw: unknown, sites: Record<string, SiteConfig>, problems: Problems): StepConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    problems.add('steps', raw, 'a non-empty list of step objects');
    return [];
  }
  const steps: StepConfig[] = [];
  // A step's name must not be a view another step gets (`<step>inprogress` in _design/proc).
  const names = raw.flatMap((value) => (isObject(value) && typeof value.name === 'string' ? [value.name] : []));
  raw.forEach((value, index) => {
    const key = `steps[${index}]`;
    if (!isObject(value)) return problems.add(key, value, 'a step object');
    // A run step is not part of the file pipeline: config/run-steps.ts checks it.
    if (isRunScope(value)) return;
    problems.unknownKeys(key, value, STEP_KEYS);
    fileScopeProblems(key, value, problems);
    const { name, site, run, out } = value;
    const clash = typeof name === 'string' ? stepNameClash(name, names) : undefined;
    if (typeof name !== 'string' || !NAME.test(name)) problems.add(`${key}.name`, name, 'a step name of lower-case letters, digits, _ and - (e.g. "proc0")');
    else if (clash) problems.add(`${key}.name`, name, `a step name that is not ${clash} (e.g. "proc0")`);
    else if (steps.some((s) => s.name === name)) problems.add(`${key}.name`, name, 'a name no other step has');
    if (typeof site !== 'string' || !sites[site]) problems.add(`${key}.site`, site, `one of the sites (${Object.keys(sites).join(', ')})`);
    if (value.executor === 'sftp' && run === undefined) {
      // the built-in transfer needs no command
    } else if (!Array.isArray(run) || run.length === 0 || !run.every((a) => typeof a === 'string'))
      problems.add(`${key}.run`, run, 'a non-empty argument vector of strings, e.g. ["cp", "--", "{file}", "{out}"]');
    else run.forEach((arg, i) => checkTemplate(`${key}.run[${i}]`, arg, problems));
    if (typeof out !== 'string' || out.length === 0) problems.add(`${key}.out`, out, OUT_FORM);
    else {
      const outProblems = outTemplateProblems(out);
      if (outProblems.length > 0) problems.add(`${key}.out`, out, `${OUT_FORM}; here: ${outProblems.join('; ')}`);
    }
    const limits = stepLimits(problems, key, value);
    const executor = value.executor ?? 'command';
    if (executor !== 'command' && executor !== 'sftp')
      problems.add(`${key}.executor`, executor, '"command" (run the argument vector) or "sftp" (the built-in transfer)');
    if (executor === 'sftp' && (typeof value.to !== 'string' || !sites[value.to])) problems.add(`${key}.to`, value.to, 'the destination site of the transfer');
    else if (value.to !== undefined && (typeof value.to !== 'string' || !sites[value.to]))
      problems.add(`${key}.to`, value.to, `one of the sites (${Object.keys(sites).join(', ')}): the site whose storage the step writes its copy to`);
    if (executor === 'sftp' && typeof value.to === 'string' && sites[value.to] && (!sites[value.to].ssh || !sites[value.to].storage))
      problems.add(`sites.${value.to}`, '(no ssh or storage)', `ssh and storage, since step ${String(name)} transfers to it`);
    if (value.custody !== undefined && typeof value.custody !== 'boolean')
      problems.add(`${key}.custody`, value.custody, 'true (the step makes a verified copy of the raw file, counted by mesh purge) or false');
    if (value.version !== undefined && !(typeof value.version === 'string' && STEP_VERSION.test(value.version)))
      problems.add(
        `${key}.version`,
        value.version,
        'a version string starting with a letter or digit, then letters, digits, ".", "-", "_" and "+" (e.g. "1.4.2"), at most 64 characters',
      );
    if (typeof site === 'string' && sites[site]?.may_run.length && typeof name === 'string' && !sites[site].may_run.includes(name))
      problems.add(`${key}.site`, site, `a site whose may_run lists ${name} (${site} may run: ${sites[site].may_run.join(', ')})`);
    steps.push({
      name: String(name),
      site: String(site),
      run: Array.isArray(run) ? run.map(String) : [],
      out: String(out),
      ...limits,
      executor: executor === 'sftp' ? 'sftp' : 'command',
      ...(typeof value.to === 'string' ? { to: value.to } : {}),
      ...(value.custody === true ? { custody: true } : {}),
      ...(typeof value.version === 'string' ? { version: value.version } : {}),
    });
  });
  return steps;
}

/** `targets: { "proc1": "2h" }` → `{ proc1: 7200 }`; unknown steps and bad durations are problems. */
function parseTargets(raw: unknown, steps: readonly StepConfig[], problems: Problems): Record<string, number> {
  const targets: Record<string, number> = {};
  if (raw === undefined) return targets;
  if (!isObject(raw)) {
    problems.add('targets', raw, 'an object mapping step names to durations, e.g. { "proc1": "2h" }');
    return targets;
  }
  for (const [step, text] of Object.entries(raw)) {
    if (steps.length > 0 && !steps.some((s) => s.name === step))
      problems.add(`targets.${step}`, text, `a target for one of the steps (${steps.map((s) => s.name).join(', ')}); there is no step ${JSON.stringify(step)}`);
    const seconds = parseDuration(text);
    if (seconds === undefined) problems.add(`targets.${step}`, text, DURATION_FORM);
    else targets[step] = seconds;
  }
  return targets;
}

interface AlertsInput {
  agent_silent_s: number;
  window_s: number;
  hook: unknown;
  hook_timeout_s: number;
  stalled_s: number;
  failing_runs: number;
  unheard_s: number;
  replication_behind_s: number;
  daq_free_min: unknown;
}

function parseAlerts(raw: AlertsInput, heartbeatS: unknown, problems: Problems): AlertsConfig {
  if (
    checkSeconds(problems, 'alerts.agent_silent_s', raw.agent_silent_s) &&
    typeof heartbeatS === 'number' &&
    heartbeatS > 0 &&
    raw.agent_silent_s <= heartbeatS
  )
    problems.add(
      'alerts.agent_silent_s',
      raw.agent_silent_s,
      `more seconds than agent.heartbeat_s (${heartbeatS}), or every agent would look silent between two heartbeats`,
    );
  checkSeconds(problems, 'alerts.window_s', raw.window_s);
  checkSeconds(problems, 'alerts.hook_timeout_s', raw.hook_timeout_s);
  checkSeconds(problems, 'alerts.stalled_s', raw.stalled_s);
  checkSeconds(problems, 'alerts.unheard_s', raw.unheard_s);
  checkSeconds(problems, 'alerts.replication_behind_s', raw.replication_behind_s);
  const daqFreeMin = raw.daq_free_min === null || raw.daq_free_min === undefined ? undefined : parseBytes(raw.daq_free_min);
  if (raw.daq_free_min !== null && raw.daq_free_min !== undefined && (daqFreeMin === undefined || daqFreeMin === 0))
    problems.add(
      'alerts.daq_free_min',
      raw.daq_free_min,
      `${BYTES_FORM}, more than 0 (the DAQ buffer's free space below which an alert is raised), or null for none`,
    );
  if (!isPositiveInteger(raw.failing_runs) || raw.failing_runs > 1000) problems.add('alerts.failing_runs', raw.failing_runs, 'an integer from 1 to 1000');
  const hook = raw.hook;
  const hookOk = Array.isArray(hook) && hook.every((a) => typeof a === 'string' && a.length > 0);
  if (!hookOk)
    problems.add(
      'alerts.hook',
      hook,
      'an argument vector of non-empty strings, e.g. ["/usr/local/bin/notify-shift", "--channel", "daq"] (started without a shell), or []',
    );
  return {
    agent_silent_s: raw.agent_silent_s,
    window_s: raw.window_s,
    hook_timeout_s: raw.hook_timeout_s,
    stalled_s: raw.stalled_s,
    failing_runs: raw.failing_runs,
    unheard_s: raw.unheard_s,
    replication_behind_s: raw.replication_behind_s,
    ...(daqFreeMin ? { daq_free_min: daqFreeMin } : {}),
    ...(hookOk && hook.length > 0 ? { hook: hook.map(String) } : {}),
  };
}

interface MetadataInput {
  metadata: unknown;
  metadata_timeout_s: unknown;
}

/** `ingest.metadata` (absent or [] = none) and its timeout; each argument a template of a new file's values. */
function parseIngestMetadata(raw: MetadataInput, problems: Problems): Pick<IngestConfig, 'metadata' | 'metadata_timeout_s'> {
  checkSeconds(problems, 'ingest.metadata_timeout_s', raw.metadata_timeout_s);
  const argv = raw.metadata;
  const ok = Array.isArray(argv) && argv.every((a) => typeof a === 'string' && a.length > 0);
  if (!ok) {
    problems.add(
      'ingest.metadata',
      argv,
      `an argument vector of non-empty strings, e.g. ["/opt/daq/bin/read-header", "{file}"] (started without a shell; placeholders {${METADATA_PLACEHOLDERS.join('}, {')}}), or []`,
    );
  } else {
    argv.forEach((arg: string, i) => {
      const found = metadataArgumentProblems(arg);
      if (found.length > 0) problems.add(`ingest.metadata[${i}]`, arg, `${METADATA_ARGUMENT_FORM}; here: ${found.join('; ')}`);
    });
  }
  return { metadata_timeout_s: raw.metadata_timeout_s as number, ...(ok && argv.length > 0 ? { metadata: argv.map(String) } : {}) };
}

function checkTemplate(key: string, template: string, problems: Problems): void {
  const found = runArgumentProblems(template);
  if (found.length > 0) problems.add(key, template, `an argument with ${PLACEHOLDER_FORM}; here: ${found.join('; ')}`);
}

/** The value at `path` of the raw config, as the user wrote it (undefined when absent). */
function written(raw: Record<string, unknown>, ...path: string[]): unknown {
  let at: unknown = raw;
  for (const key of path) at = isObject(at) && Object.hasOwn(at, key) ? at[key] : undefined;
  return at;
}

/** Paths of the own `__proto__` keys in a parsed JSON value (JSON.parse keeps them as data). */
function prototypeKeyPaths(value: unknown, path: string): string[] {
  if (value === null || typeof value !== 'object') return [];
  return Object.keys(value).flatMap((key) => {
    const at = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
    return key === '__proto__' ? [at] : prototypeKeyPaths((value as Record<string, unknown>)[key], at);
  });
}
