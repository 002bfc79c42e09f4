/**
 * The systemd units of a site whose processes may live for ever: one per process (agent, ingest,
 * coordinator), restarted on failure, never restarted for bad input (exit 2: a config error does
 * not heal by itself), stopped by SIGTERM to the main process only (the agent lets its steps
 * finish; KillMode=mixed keeps systemd from signalling them at the same time). Credentials come
 * from an EnvironmentFile that names each account and its password file; no password is in a
 * unit or in an environment file.
 */
import type { SitePlan, ProcessKind } from './plan.js';
import { ETC, processEnvironment } from './plan.js';
import { envFileValue, systemdCommandLine } from './quote.js';
import type { DeployFile } from './files.js';

export const UNIT_DIR = '/etc/systemd/system';

/** `couchmesh-modane-agent`. */
export function unitName(site: string, kind: ProcessKind): string {
  return `couchmesh-${site}-${kind}`;
}

export function envFilePath(site: string, kind: ProcessKind): string {
  return `${ETC}/${unitName(site, kind)}.env`;
}

/** The seconds the agent may take to stop: its grace for running steps, then its last writes. */
function stopSeconds(plan: SitePlan, kind: ProcessKind): number {
  return kind === 'agent' ? Math.ceil(plan.config.agent.grace_s) + 30 : 30;
}

function commandOf(plan: SitePlan, kind: ProcessKind): string[] {
  const { site } = plan;
  switch (kind) {
    case 'agent':
      return [...site.mesh, 'agent', '--site', site.name];
    case 'ingest':
      return [...site.mesh, 'ingest', plan.ingestDir as string, '--site', site.name, '--watch'];
    case 'coordinator':
      return [...site.mesh, 'coordinator'];
  }
}

function describe(plan: SitePlan, kind: ProcessKind): string {
  const { site, config } = plan;
  switch (kind) {
    case 'agent': {
      const woken = plan.triggers.length ? `; wakes ${plan.triggers.map((s) => s.name).join(', ')} over SSH` : '';
      return `CouchMesh agent of site ${site.name} (steps ${plan.steps.map((s) => s.name).join(', ')}${woken})`;
    }
    case 'ingest':
      return `CouchMesh ingest of site ${site.name} (catalogues ${plan.ingestDir})`;
    case 'coordinator':
      return `CouchMesh coordinator of ${config.database} (replication, assignment, audit, alerts)`;
  }
}

export function unitFile(plan: SitePlan, kind: ProcessKind, user: string): string {
  const name = unitName(plan.site.name, kind);
  return [
    `# ${name}.service, written by mesh deploy --site ${plan.site.name} from ${plan.config.source}.`,
    `# Install in ${UNIT_DIR}/, then: systemctl daemon-reload && systemctl enable --now ${name}`,
    '[Unit]',
    `Description=${describe(plan, kind)}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `User=${user}`,
    '# The accounts and their password files (no password here): mode 0600, see the README.',
    `EnvironmentFile=${envFilePath(plan.site.name, kind)}`,
    `ExecStart=${systemdCommandLine(commandOf(plan, kind))}`,
    'Restart=on-failure',
    'RestartSec=10s',
    '# Exit 2 is bad input (the config, an argument): restarting cannot fix it.',
    'RestartPreventExitStatus=2',
    '# SIGTERM to mesh only; it stops its own children in order, systemd kills what is left after the timeout.',
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${stopSeconds(plan, kind)}s`,
    'NoNewPrivileges=yes',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

export function envFile(plan: SitePlan, kind: ProcessKind, user: string): string {
  const vars = processEnvironment(plan, kind);
  return [
    `# Environment of ${unitName(plan.site.name, kind)}.service (systemd EnvironmentFile), written by mesh deploy.`,
    `# Install as ${envFilePath(plan.site.name, kind)} (mode 0600). No password in it: each *_PASSWORD_FILE names a file`,
    `# whose first line is the password; create those mode 0600, owned by ${user}. Change the account names to yours.`,
    ...vars.flatMap((v) => [`# ${v.why}`, envFileValue(v.name, v.value)]),
    ...(plan.config.nats ? ['# NATS (nats.url is set): add MESH_NATS_USER and MESH_NATS_PASSWORD_FILE if the NATS server needs an account.'] : []),
    '',
  ].join('\n');
}

export function systemdFiles(plan: SitePlan, user: string): DeployFile[] {
  return plan.processes.flatMap((kind) => [
    {
      path: `systemd/${unitName(plan.site.name, kind)}.service`,
      content: unitFile(plan, kind, user),
      installAs: `${UNIT_DIR}/${unitName(plan.site.name, kind)}.service`,
      mode: 0o644,
    },
    { path: `env/${unitName(plan.site.name, kind)}.env`, content: envFile(plan, kind, user), installAs: envFilePath(plan.site.name, kind), mode: 0o600 },
  ]);
}
