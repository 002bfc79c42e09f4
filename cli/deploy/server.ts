/**
 * What a server of the mesh must hold, for the site that hosts it: the data database's
 * `_security` (store/security.ts), the accounts the processes that talk to it log in with (one
 * per process, each with one mesh role), and the replication jobs that touch it, with the server
 * whose `_replicator` holds each (coordinator/replication.ts). The coordinator writes `_security`,
 * the design documents and the jobs itself every round; the accounts are the operator's to create.
 */
import { plannedReplications } from '../../coordinator/replication.js';
import { serverOf } from '../../coordinator/servers.js';
import { meshSecurity } from '../../store/security.js';
import type { DeployFile } from './files.js';
import { credentialPrefix } from '../../config/credentials.js';
import { COORDINATOR_ACCOUNT, OPERATOR_ACCOUNT, type SitePlan, accountName, siteRoles } from './plan.js';
import { shellWord } from './quote.js';

export interface ServerAccount {
  name: string;
  role: 'agent' | 'operator' | 'coordinator';
  site?: string;
  why: string;
}

/** The accounts on the plan's server: the agents and ingest of the sites that use it, the coordinator's replication account, an operator. */
export function serverAccounts(plan: SitePlan): ServerAccount[] {
  const { config } = plan;
  const server = plan.server;
  if (!server) return [];
  const accounts: ServerAccount[] = [];
  for (const site of Object.values(config.sites)) {
    if (serverOf(config, site).name !== server.name) continue;
    const other = siteRoles(config, site);
    if (other.processes.includes('agent') || other.once)
      accounts.push({
        name: accountName(site.name, 'agent'),
        role: 'agent',
        site: site.name,
        why: `${site.name}'s agent${other.once ? ' (its --once passes and batch jobs)' : ''}`,
      });
    if (other.processes.includes('ingest'))
      accounts.push({ name: accountName(site.name, 'ingest'), role: 'agent', site: site.name, why: `${site.name}'s ingest` });
  }
  accounts.push({ name: COORDINATOR_ACCOUNT, role: 'coordinator', why: 'the replication jobs (they carry every account’s writes; only this role may)' });
  accounts.push({ name: OPERATOR_ACCOUNT, role: 'operator', why: 'people: mesh retry, the status page’s login' });
  return accounts;
}

export function accountsScript(plan: SitePlan): string {
  const server = plan.server;
  if (!server) return '';
  return [
    '#!/bin/sh',
    `# The accounts on ${server.name}'s server (${server.server}), written by mesh deploy: one per process, each with one mesh role.`,
    `# Run where the mesh config is (MESH_CONFIG or --config) with ${server.name}'s admin in ${credentialPrefix(server.credentials_of)}_USER`,
    '# and _PASSWORD_FILE. Each asks for the new password (or add --password-file FILE); none is ever on a command line.',
    '# The same account must exist, with the same password, on every server its process talks to: the coordinator and the',
    "# operator on every server, an agent on its site's server.",
    'set -e',
    ...serverAccounts(plan).flatMap((a) => [
      `# ${a.why}`,
      `mesh users add ${shellWord(a.name)} --role ${a.role}${a.site ? ` --site ${shellWord(a.site)}` : ''} --server ${shellWord(server.name)}`,
    ]),
    '',
  ].join('\n');
}

/** The replication jobs that touch the plan's server, and whose `_replicator` holds each. */
export function replicationSettings(plan: SitePlan): object {
  const server = plan.server;
  if (!server) return {};
  const jobs = plannedReplications(plan.config).filter((j) => j.source.server === server.server || j.target.server === server.server);
  return {
    server: server.name,
    url: server.server,
    database: plan.config.database,
    reachable: server.reachable,
    jobs: jobs.map((j) => ({ id: j.id, from: j.from, to: j.to, held_by: j.on, continuous: true })),
    written_by: `the coordinator (site ${plan.config.coordinator.site}), every round; nothing to create by hand`,
    replication_account: `${COORDINATOR_ACCOUNT} (role mesh-coordinator) on both ends of every job`,
  };
}

export function serverFiles(plan: SitePlan): DeployFile[] {
  if (!plan.server) return [];
  const security = meshSecurity(Object.keys(plan.config.sites));
  return [
    {
      path: 'server/security.json',
      content: `${JSON.stringify(security, null, 2)}\n`,
      installAs: `${plan.server.server}/${plan.config.database}/_security (mesh couchapp push --site ${plan.server.name} writes it)`,
      mode: 0o644,
    },
    { path: 'server/accounts.sh', content: accountsScript(plan), installAs: '(run once, with the server admin)', mode: 0o755 },
    {
      path: 'server/replication.json',
      content: `${JSON.stringify(replicationSettings(plan), null, 2)}\n`,
      installAs: '(a reference: the coordinator writes the jobs)',
      mode: 0o644,
    },
  ];
}
