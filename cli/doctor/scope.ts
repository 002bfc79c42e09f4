/**
 * What `mesh doctor --site S [--unit U]` checks, from the config alone: the servers the site's
 * processes (or the one unit's) talk to and the roles their accounts must hold there, the
 * folders they read and write, the SSH targets they connect to, the batch system, NATS.
 */
import { dirname, isAbsolute } from 'node:path';
import type { BatchConfig, MeshConfig, SiteConfig, SshTarget } from '../../config/types.js';
import { needsTrigger } from '../../agents/trigger.js';
import { distinctServers, serverOf } from '../../coordinator/servers.js';
import { MeshError } from '../../core/errors.js';
import { agentRole } from '../../core/roles.js';
import { siteRoles } from '../deploy/plan.js';

/** A process of the site (`agent` also for a --once site's passes), or the server it hosts. */
export type DoctorUnit = 'agent' | 'ingest' | 'coordinator' | 'server';
export const DOCTOR_UNITS: readonly DoctorUnit[] = ['agent', 'ingest', 'coordinator', 'server'];

export interface ServerScope {
  server: SiteConfig;
  /** Roles one of which the account must hold (`_admin` for the server admin). */
  roles: string[];
  /** Whether the coordinator's replication account is checked too. */
  replication: boolean;
}

export interface PathScope {
  path: string;
  access: 'read' | 'write';
  why: string;
}

export interface SshScope {
  site: string;
  target: SshTarget;
  why: string;
}

export interface DoctorScope {
  site: SiteConfig;
  units: DoctorUnit[];
  servers: ServerScope[];
  paths: PathScope[];
  ssh: SshScope[];
  batch?: BatchConfig;
  nats: boolean;
}

/** The folder under which a step's outputs go: its `out` template up to the first placeholder. */
export function outRoot(template: string): string | undefined {
  const at = template.indexOf('{');
  const prefix = at >= 0 ? template.slice(0, at) : template;
  if (!isAbsolute(prefix)) return undefined;
  return prefix.endsWith('/') ? prefix.replace(/\/+$/, '') || '/' : dirname(prefix);
}

export function siteUnits(config: MeshConfig, site: SiteConfig): DoctorUnit[] {
  const roles = siteRoles(config, site);
  const units: DoctorUnit[] = [...roles.processes];
  if (roles.once) units.push('agent');
  if (roles.server) units.push('server');
  return units;
}

export function doctorScope(config: MeshConfig, siteName: string, unit?: DoctorUnit): DoctorScope {
  const site = config.sites[siteName];
  if (!site)
    throw new MeshError(
      'CONFIG_INVALID',
      `--site is ${JSON.stringify(siteName)}, expected one of: ${Object.keys(config.sites).join(', ')} (from ${config.source})`,
    );
  const all = siteUnits(config, site);
  if (unit && !all.includes(unit))
    throw new MeshError(
      'BAD_INPUT',
      `site ${siteName} has no ${unit} (it has: ${all.join(', ') || 'nothing to check'}); choose one of those with --unit, or leave --unit out`,
    );
  const units = unit ? [unit] : all;
  const servers = new Map<string, ServerScope>();
  const need = (server: SiteConfig, role: string, replication = false) => {
    const entry = servers.get(server.name) ?? { server, roles: [], replication: false };
    if (!entry.roles.includes(role)) entry.roles.push(role);
    entry.replication ||= replication;
    servers.set(server.name, entry);
  };
  const paths: PathScope[] = [];
  const ssh: SshScope[] = [];
  for (const kind of units) {
    if (kind === 'agent' || kind === 'ingest') need(serverOf(config, site), agentRole(site.name));
    if (kind === 'coordinator') for (const server of distinctServers(config)) need(server, '_admin', true);
    if (kind === 'server') need(serverOf(config, site), '_admin');
    if (kind === 'ingest') {
      if (site.storage) paths.push({ path: site.storage, access: 'read', why: 'the DAQ files ingest catalogues (storage)' });
    }
    if (kind === 'agent') {
      paths.push({ path: site.log_dir, access: 'write', why: 'step and batch logs (log_dir)' });
      config.steps.forEach((step, index) => {
        const root = outRoot(step.out);
        const previous = config.steps[index - 1];
        const previousRoot = previous ? outRoot(previous.out) : undefined;
        const landsHere = (s: typeof step) => (s.executor === 'sftp' ? s.to === site.name : s.site === site.name);
        if (step.site === site.name && step.executor !== 'sftp' && root) paths.push({ path: root, access: 'write', why: `the outputs of ${step.name}` });
        if (step.executor === 'sftp' && step.to === site.name && root)
          paths.push({ path: root, access: 'write', why: `the files ${step.site}'s ${step.name} lands here` });
        if (step.site === site.name && previous && previousRoot && landsHere(previous))
          paths.push({ path: previousRoot, access: 'read', why: `the inputs of ${step.name} (${previous.name}'s outputs)` });
        if (step.site === site.name && step.executor === 'sftp') {
          const to = step.to ? config.sites[step.to] : undefined;
          if (to?.ssh) ssh.push({ site: to.name, target: to.ssh, why: `${step.name} transfers to ${to.name}` });
        }
      });
      for (const target of needsTrigger(config, site.name))
        if (target.ssh) ssh.push({ site: target.site.name, target: target.ssh, why: `the trigger wakes ${target.site.name}` });
    }
  }
  const uniquePaths = [...new Map(paths.map((p) => [`${p.access} ${p.path}`, p])).values()].filter(
    (p) => p.access === 'write' || !paths.some((q) => q.path === p.path && q.access === 'write'),
  );
  const bySsh = new Map<string, SshScope>();
  for (const s of ssh) {
    const key = `${s.target.user}@${s.target.host}:${s.target.port} ${s.target.identity_file}`;
    const known = bySsh.get(key);
    bySsh.set(key, known ? { ...known, why: `${known.why}; ${s.why}` } : s);
  }
  return {
    site,
    units,
    servers: [...servers.values()],
    paths: uniquePaths,
    ssh: [...bySsh.values()],
    ...(units.includes('agent') && site.batch ? { batch: site.batch } : {}),
    nats: units.includes('agent') && config.nats !== undefined,
  };
}
