/**
 * What a site needs deployed, derived from its profile and the rest of the config (never from
 * its name): the long-lived processes it runs (agent, ingest, coordinator), the `--once` pass of
 * a site that may not keep a process alive, who connects to it over SSH and for what, and the
 * server it hosts. Pure; every problem is reported at once.
 */
import { isAbsolute } from 'node:path';
import { credentialPrefix } from '../../config/credentials.js';
import type { MeshConfig, SiteConfig, StepConfig } from '../../config/types.js';
import { needsTrigger } from '../../agents/trigger.js';
import { distinctServers, serverOf } from '../../coordinator/servers.js';
import { MeshError } from '../../core/errors.js';

export type ProcessKind = 'agent' | 'ingest' | 'coordinator';

export interface SitePlan {
  config: MeshConfig;
  site: SiteConfig;
  /** The steps the site owns. */
  steps: StepConfig[];
  /** Long-lived processes, each a systemd unit (long_running sites only). */
  processes: ProcessKind[];
  /** A site that may not keep a process alive and owns steps: its agent runs as `--once` passes (cron, the trigger). */
  once: boolean;
  /** Sites whose agent wakes this one over SSH (agents/trigger.ts). */
  triggeredBy: SiteConfig[];
  /** Sites this site's agent wakes over SSH. */
  triggers: SiteConfig[];
  /** `sftp` steps that land on this site. */
  transfersIn: StepConfig[];
  /** The server this site hosts (its credentials name it), if any. */
  server?: SiteConfig;
  /** The folder the ingest unit scans. */
  ingestDir?: string;
}

/** Where deploy puts what it tells the operator to install (the README says so too). */
export const ETC = '/etc/couchmesh';
export const CREDENTIALS_DIR = `${ETC}/credentials`;

/** The name deploy gives each process's account (the operator may choose others: the env files and accounts.sh say them). */
export function accountName(site: string, kind: 'agent' | 'ingest'): string {
  return `${site}-${kind}`;
}
export const COORDINATOR_ACCOUNT = 'coordinator';
export const OPERATOR_ACCOUNT = 'operator';
export const ADMIN_ACCOUNT = 'admin';

export function passwordFile(account: string): string {
  return `${CREDENTIALS_DIR}/${account}.password`;
}

/** `["mesh"]` is the loader's default: it names neither the program's path nor the config on that site. */
function meshIsDefault(site: SiteConfig): boolean {
  return site.mesh.length === 1 && site.mesh[0] === 'mesh';
}

/** What the site does in the mesh, from the config alone (no check of what deploying it needs). */
export function siteRoles(config: MeshConfig, site: SiteConfig): Omit<SitePlan, 'config' | 'site' | 'ingestDir'> {
  const name = site.name;
  const steps = config.steps.filter((s) => s.site === name);
  const processes: ProcessKind[] = [];
  if (site.long_running && config.coordinator.site === name) processes.push('coordinator');
  if (site.long_running && config.ingest.site === name) processes.push('ingest');
  if (site.long_running && steps.length > 0) processes.push('agent');
  // The agents that run for ever, and whom each wakes.
  const waking = Object.values(config.sites).filter((s) => s.long_running && config.steps.some((step) => step.site === s.name));
  const server = distinctServers(config).find((s) => s.name === name);
  return {
    steps,
    processes,
    once: steps.length > 0 && !site.long_running,
    triggeredBy: waking.filter((s) => needsTrigger(config, s.name).some((t) => t.site.name === name)),
    triggers: processes.includes('agent') ? needsTrigger(config, name).map((t) => t.site) : [],
    transfersIn: config.steps.filter((s) => s.executor === 'sftp' && s.to === name),
    ...(server ? { server } : {}),
  };
}

/** The site's plan, or CONFIG_INVALID naming everything deploying it still needs. */
export function sitePlan(config: MeshConfig, name: string, options: { ingestDir?: string } = {}): SitePlan {
  const site = config.sites[name];
  if (!site)
    throw new MeshError(
      'CONFIG_INVALID',
      `--site is ${JSON.stringify(name)}, expected one of: ${Object.keys(config.sites).join(', ')} (from ${config.source})`,
    );
  const roles = siteRoles(config, site);
  const problems: string[] = [];
  if (config.coordinator.site === name && !site.long_running)
    problems.push(
      `coordinator.site is ${name}, whose profile says long_running: false; the coordinator runs for ever: put it on a site that may keep a process alive`,
    );
  if (config.ingest.site === name && !site.long_running)
    problems.push(
      `ingest.site is ${name}, whose profile says long_running: false; ingest watches a folder for ever: put it on a site that may keep a process alive`,
    );
  if (roles.processes.length > 0 || roles.once) {
    const how = roles.once ? 'the cron line and the trigger run' : 'the systemd units run';
    if (meshIsDefault(site))
      problems.push(
        `sites.${name}.mesh is not set (the default is ["mesh"]): ${how} mesh on ${name}'s machines and must name the program and its config there; ` +
          `set it, e.g. ["/usr/local/bin/mesh", "--config", "${ETC}/mesh.json"]`,
      );
    else if (!isAbsolute(site.mesh[0]))
      problems.push(`sites.${name}.mesh[0] is ${JSON.stringify(site.mesh[0])}: ${how} it without a login shell's PATH; give its absolute path`);
  }
  let ingestDir: string | undefined;
  if (roles.processes.includes('ingest')) {
    ingestDir = options.ingestDir ?? site.storage;
    if (!ingestDir)
      problems.push(`sites.${name}.storage is not set and no --ingest-dir was given: the ingest unit must know the folder of the DAQ files it catalogues`);
    else if (!isAbsolute(ingestDir)) problems.push(`--ingest-dir is ${JSON.stringify(ingestDir)}: give an absolute path`);
  }
  if (roles.processes.length === 0 && !roles.once && !roles.server && roles.transfersIn.length === 0 && problems.length === 0)
    problems.push(
      `site ${name} runs nothing (no step, not the ingest or coordinator site) and hosts no server (it uses ${serverOf(config, site).name}'s): nothing to deploy there`,
    );
  if (problems.length > 0) throw new MeshError('CONFIG_INVALID', `cannot deploy site ${name} from ${config.source}:\n  - ${problems.join('\n  - ')}`);
  return { config, site, ...roles, ...(ingestDir ? { ingestDir } : {}) };
}

/** One variable of a process's environment: a name, and a value that is never a secret (a user name or a file's path). */
export interface EnvVariable {
  name: string;
  value: string;
  /** Why the process needs it. */
  why: string;
}

/** The environment a process of the plan's site needs: its accounts on the servers it talks to, by name and password file. */
export function processEnvironment(plan: SitePlan, kind: ProcessKind): EnvVariable[] {
  const { config, site } = plan;
  const vars: EnvVariable[] = [];
  const login = (prefixOf: string, user: string, file: string, why: string) => {
    const prefix = credentialPrefix(prefixOf);
    vars.push({ name: `${prefix}_USER`, value: user, why });
    vars.push({ name: `${prefix}_PASSWORD_FILE`, value: passwordFile(file), why: `its password (the file's first line)` });
  };
  if (kind === 'coordinator') {
    for (const server of distinctServers(config)) {
      // CouchDB's own admin, whatever its name there: the password file says whose it is.
      login(
        server.credentials_of,
        ADMIN_ACCOUNT,
        `${server.name}-${ADMIN_ACCOUNT}`,
        `the server admin of ${server.name}: database, design documents, _security, _replicator jobs`,
      );
      login(
        `${server.credentials_of}_replication`,
        COORDINATOR_ACCOUNT,
        COORDINATOR_ACCOUNT,
        `the account the replication jobs log in with on ${server.name} (role mesh-coordinator)`,
      );
    }
  } else {
    const account = accountName(site.name, kind);
    login(site.credentials_of, account, account, `${site.name}'s ${kind} on ${serverOf(config, site).name}'s server, role mesh-agent:${site.name}`);
  }
  return vars;
}
