import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshError, errorMessage } from '../core/errors.js';
import { meshSchema } from './schema.js';
import type { AgentTuning, MeshConfig, SiteConfig, StepConfig } from './types.js';
import { DATABASE_NAME, NAME, Problems, isObject, isPositiveInteger, isPositiveNumber, show } from './validate.js';

export const TEMPLATE_FIELDS = ['file', 'out', 'doc_id', 'run_name', 'file_number', 'step', 'prev_out'] as const;

const SITE_KEYS = ['server', 'reachable', 'long_running', 'credentials_of', 'log_dir'] as const;
const STEP_KEYS = ['name', 'site', 'run', 'out', 'timeout_s', 'max_attempts', 'lease_s'] as const;

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
  const schema = meshSchema();
  try {
    // convict cannot walk maps and lists of objects: those are checked below.
    const { sites: _sites, steps: _steps, ...scalars } = raw;
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

  const sites = parseSites(raw.sites, base, problems);
  const steps = parseSteps(raw.steps, sites, problems);

  const ingest = schema.get('ingest');
  if (ingest.site && !sites[ingest.site]) problems.add('ingest.site', ingest.site, `one of the sites (${Object.keys(sites).join(', ')})`);
  if (!ingest.site) problems.add('ingest.site', ingest.site, 'the name of the site that catalogues DAQ files');
  try {
    const groups = new RegExp(ingest.pattern).source;
    if (!groups.includes('(?<run_name>') || !groups.includes('(?<file_number>')) problems.add('ingest.pattern', ingest.pattern, 'a regular expression with named groups (?<run_name>…) and (?<file_number>…)');
  } catch {
    problems.add('ingest.pattern', ingest.pattern, 'a valid regular expression');
  }

  const agent = schema.get('agent') as AgentTuning;
  for (const [key, value] of Object.entries(agent)) {
    if (!isPositiveNumber(value)) problems.add(`agent.${key}`, value, 'a positive number of seconds');
  }
  problems.throwIfAny(source);

  return deepFreeze({ database, doc_type: docType, sites, ingest: { ...ingest }, steps, agent: { ...agent }, source });
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
    else if (new URL(server).password || new URL(server).username) problems.add(`${key}.server`, '(a URL with credentials)', `a URL without credentials; put them in MESH_${name.toUpperCase()}_USER and _PASSWORD or _PASSWORD_FILE`);
    for (const flag of ['reachable', 'long_running'] as const) {
      if (typeof profile[flag] !== 'boolean') problems.add(`${key}.${flag}`, profile[flag], 'true or false');
    }
    const credentialsOf = profile.credentials_of ?? name;
    if (typeof credentialsOf !== 'string') problems.add(`${key}.credentials_of`, credentialsOf, 'a site name');
    const logDir = profile.log_dir ?? join('logs', name);
    if (typeof logDir !== 'string') problems.add(`${key}.log_dir`, logDir, 'a directory path');
    sites[name] = {
      name,
      server: typeof server === 'string' ? server.replace(/\/+$/, '') : '',
      reachable: profile.reachable === true,
      long_running: profile.long_running === true,
      credentials_of: String(credentialsOf),
      log_dir: resolve(base, String(logDir)),
    };
  }
  for (const [name, site] of Object.entries(sites)) {
    if (!sites[site.credentials_of] && site.credentials_of !== name) problems.add(`sites.${name}.credentials_of`, site.credentials_of, 'the name of a site');
  }
  return sites;
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
  raw.forEach((value, index) => {
    const key = `steps[${index}]`;
    if (!isObject(value)) return problems.add(key, value, 'a step object');
    problems.unknownKeys(key, value, STEP_KEYS);
    const { name, site, run, out } = value;
    if (typeof name !== 'string' || !NAME.test(name)) problems.add(`${key}.name`, name, 'a step name of lower-case letters, digits, _ and - (e.g. "proc0")');
    else if (steps.some((s) => s.name === name)) problems.add(`${key}.name`, name, 'a name no other step has');
    if (typeof site !== 'string' || !sites[site]) problems.add(`${key}.site`, site, `one of the sites (${Object.keys(sites).join(', ')})`);
    if (!Array.isArray(run) || run.length === 0 || !run.every((a) => typeof a === 'string')) problems.add(`${key}.run`, run, 'a non-empty argument vector of strings, e.g. ["cp", "--", "{file}", "{out}"]');
    else run.forEach((arg, i) => checkTemplate(`${key}.run[${i}]`, arg, problems));
    if (typeof out !== 'string' || out.length === 0) problems.add(`${key}.out`, out, 'an output path template, e.g. "/data/raw/{run_name}_{file_number}"');
    else checkTemplate(`${key}.out`, out, problems);
    const timeout = value.timeout_s ?? 3600;
    const attempts = value.max_attempts ?? 3;
    const lease = value.lease_s ?? 120;
    if (!isPositiveNumber(timeout)) problems.add(`${key}.timeout_s`, timeout, 'a positive number of seconds');
    if (!isPositiveInteger(attempts)) problems.add(`${key}.max_attempts`, attempts, 'a positive integer');
    if (!isPositiveNumber(lease)) problems.add(`${key}.lease_s`, lease, 'a positive number of seconds');
    steps.push({ name: String(name), site: String(site), run: Array.isArray(run) ? run.map(String) : [], out: String(out), timeout_s: Number(timeout), max_attempts: Number(attempts), lease_s: Number(lease) });
  });
  return steps;
}

function checkTemplate(key: string, template: string, problems: Problems): void {
  for (const match of template.matchAll(/\{([^{}]*)\}/g)) {
    if (!(TEMPLATE_FIELDS as readonly string[]).includes(match[1])) problems.add(key, template, `placeholders among {${TEMPLATE_FIELDS.join('}, {')}} (found {${match[1]}})`);
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
