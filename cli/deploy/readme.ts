/** The README of one site's deployment: what runs there, what to install, where each file goes, how to check it. */
import { credentialPrefix } from '../../config/credentials.js';
import { plannedReplications } from '../../coordinator/replication.js';
import { serverOf } from '../../coordinator/servers.js';
import type { DeployFile } from './files.js';
import { configOnSite } from './once.js';
import { CREDENTIALS_DIR, type SitePlan, processEnvironment } from './plan.js';
import { envFilePath, unitName } from './systemd.js';

export interface ReadmeOptions {
  user: string;
  version: string;
  everyMinutes: number;
  /** Set when the profile's mesh command gives the pass no credentials for its server (see onceCredentialsNote). */
  credentialsNote?: string;
}

/** When the --once pass would start without its server's account: the profile's `mesh` is what carries it. */
export function onceCredentialsNote(plan: SitePlan): string | undefined {
  if (!plan.once) return undefined;
  const prefix = credentialPrefix(plan.site.credentials_of);
  if (plan.site.mesh.some((word) => word.startsWith(`${prefix}_USER=`))) return undefined;
  const vars = processEnvironment(plan, 'agent').map((v) => `${v.name}=${v.value}`);
  return (
    `sites.${plan.site.name}.mesh sets no ${prefix}_USER: cron and sshd start the pass with almost no environment, so it would ` +
    `talk to ${serverOf(plan.config, plan.site).name}'s server without an account. If that server has accounts, make the command carry them, e.g. ` +
    `${JSON.stringify(['/usr/bin/env', ...vars, ...plan.site.mesh])}, and deploy again.`
  );
}

function whatRuns(plan: SitePlan, options: ReadmeOptions): string[] {
  const { site, config } = plan;
  const lines: string[] = [];
  for (const kind of plan.processes) {
    if (kind === 'agent') lines.push(`- the agent (\`${unitName(site.name, kind)}\`): steps ${plan.steps.map((s) => s.name).join(', ')}`);
    if (kind === 'ingest') lines.push(`- ingest (\`${unitName(site.name, kind)}\`): catalogues the DAQ files under ${plan.ingestDir}`);
    if (kind === 'coordinator') lines.push(`- the coordinator (\`${unitName(site.name, kind)}\`): replication, assignment, audit, alerts, for every server`);
  }
  if (plan.triggers.length)
    lines.push(
      `- the agent wakes ${plan.triggers.map((s) => s.name).join(', ')} over SSH (${plan.triggers.map((s) => `${s.ssh?.user}@${s.ssh?.host}:${s.ssh?.port}`).join(', ')})`,
    );
  if (plan.once)
    lines.push(
      `- no process lives here: the agent runs as \`--once\` passes${plan.triggeredBy.length ? `, started by ${plan.triggeredBy.map((s) => s.name).join(', ')} over SSH when work arrives` : ''} and by cron every ${options.everyMinutes} minutes` +
        (site.batch
          ? `; each pass submits ${site.batch.system} jobs (up to ${site.batch.docs_per_job} documents each) for steps ${plan.steps.map((s) => s.name).join(', ')}`
          : ''),
    );
  if (plan.transfersIn.length) lines.push(`- ${plan.transfersIn.map((s) => `${s.site}'s ${s.name}`).join(', ')} lands files here over SFTP`);
  if (plan.server) {
    const server = plan.server;
    lines.push(`- the server ${server.server} (database ${config.database})${server.reachable ? '' : ', reachable by nobody: it connects out'}`);
    for (const job of plannedReplications(config).filter((j) => j.source.server === server.server || j.target.server === server.server)) {
      const peer = job.host.server === server.server ? undefined : job.host;
      lines.push(
        `- replication ${job.from} → ${job.to}, held by ${job.on}'s \`_replicator\`` +
          (peer ? ` (this server must accept connections from ${peer.name} on its port)` : ' (this server connects out to the other)'),
      );
    }
  }
  return lines;
}

function install(plan: SitePlan, options: ReadmeOptions): string[] {
  const { site } = plan;
  const lines = [
    `- Node.js ≥ 20 and CouchMesh: \`npm install -g --ignore-scripts couchmesh-${options.version}.tgz\` (nothing to compile: the package holds the compiled code)`,
  ];
  if (plan.processes.length || plan.once) {
    const config = configOnSite(site.mesh);
    lines.push(`- the mesh config${config ? ` at ${config}` : ''}, the same file as on every other site; \`${site.mesh.join(' ')}\` must run mesh with it`);
  }
  if (plan.processes.length)
    lines.push(
      `- systemd, and the account the units run as: \`useradd --system --create-home ${options.user}\` (it must read the data and write ${site.log_dir})`,
    );
  if (site.batch)
    lines.push(
      site.batch.system === 'slurm'
        ? '- the Slurm client (`sbatch`, `scontrol`, `scancel`; Debian: slurm-client)'
        : '- the Grid Engine client (`qsub`, `qstat`, `qdel`; Debian: gridengine-client)',
    );
  if (plan.triggeredBy.length || plan.transfersIn.length)
    lines.push(`- sshd, and the account ${site.ssh?.user} with a POSIX login shell (sh, bash): the forced command is a shell \`case\``);
  if (plan.triggers.length || plan.steps.some((s) => s.executor === 'sftp'))
    lines.push('- the SSH identity file of the profile, readable by the units’ account only (mode 0600); the host key it expects is pinned in the profile');
  if (plan.server) lines.push(`- Apache CouchDB 3 at ${plan.server.server} (its admin account made at install)`);
  return lines;
}

function credentials(plan: SitePlan, options: ReadmeOptions): string[] {
  const lines: string[] = [];
  const files = new Set<string>();
  for (const kind of plan.processes) for (const v of processEnvironment(plan, kind)) if (v.name.endsWith('_PASSWORD_FILE')) files.add(v.value);
  if (files.size)
    lines.push(
      `Create each password file (first line: the password; \`install -m 0600 -o ${options.user} /dev/null FILE\`, then write it with an editor, never with a command line):`,
      '',
      ...[...files].map((f) => `- ${f}`),
      '',
      `They live in ${CREDENTIALS_DIR}; the env files in the table name them and the accounts. No file written here holds a password.`,
    );
  if (plan.once) {
    const vars = processEnvironment(plan, 'agent');
    lines.push(
      `The pass logs in as ${vars[0].value} (\`${vars.map((v) => v.name).join('`, `')}\`), given by \`sites.${plan.site.name}.mesh\`; its batch jobs inherit it, or read the same password file.`,
    );
    if (options.credentialsNote) lines.push('', `**Note:** ${options.credentialsNote}`);
  }
  if (plan.server)
    lines.push(...(lines.length ? [''] : []), `\`server/accounts.sh\` creates the accounts of ${plan.server.name}'s server (it asks for each password).`);
  return lines;
}

function checks(plan: SitePlan, options: ReadmeOptions): string[] {
  const { site } = plan;
  const lines = [
    `Run \`mesh doctor --site ${site.name}\` on this site's machine: one line per check, \`ok\` or \`FAIL\` with what to do; exit 0 when all pass.`,
  ];
  for (const kind of plan.processes)
    lines.push(
      `- as each unit: \`sudo -u ${options.user} ${site.mesh.join(' ')} doctor --site ${site.name} --unit ${kind} --env-file ${envFilePath(site.name, kind)}\``,
    );
  if (plan.processes.length)
    lines.push(`- then \`systemctl status 'couchmesh-${site.name}-*'\` and \`journalctl -u couchmesh-${site.name}-agent -f\` (JSON log lines)`);
  if (plan.once) lines.push(`- as the account of the pass: \`${site.mesh.join(' ')} doctor --site ${site.name}\`; the pass logs to ${site.log_dir}/once.log`);
  lines.push('- `mesh status` (anywhere) shows the agents, their heartbeats, and the replication.');
  return lines;
}

export function readme(plan: SitePlan, files: readonly DeployFile[], options: ReadmeOptions): string {
  const { site, config } = plan;
  return [
    `# CouchMesh at site ${site.name}`,
    '',
    `Written by \`mesh deploy --site ${site.name}\` from ${config.source}. Deploy again after any change of the config: the files follow from it.`,
    '',
    '## What runs here',
    '',
    ...whatRuns(plan, options),
    '',
    '## Install',
    '',
    ...install(plan, options),
    '',
    '## Files',
    '',
    '| file | goes to | mode |',
    '|---|---|---|',
    ...files.map((f) => `| \`${f.path}\` | ${f.installAs.startsWith('/') ? `\`${f.installAs}\`` : f.installAs} | ${f.mode.toString(8).padStart(4, '0')} |`),
    '',
    ...(plan.triggeredBy.length || plan.transfersIn.length
      ? [
          '`ssh/authorized_keys` is one line: append it to the authorized_keys of ' +
            `${site.ssh?.user} (usually ~${site.ssh?.user}/.ssh/authorized_keys). It lets the key run only what the mesh needs here` +
            (plan.transfersIn.length
              ? '; with SFTP allowed the key can write wherever that account can, so keep the authorized_keys file out of its reach (owned by root, or AuthorizedKeysFile under /etc/ssh)'
              : '') +
            '.',
          '',
        ]
      : []),
    '## Credentials',
    '',
    ...credentials(plan, options),
    '',
    '## Check',
    '',
    ...checks(plan, options),
    '',
  ].join('\n');
}
