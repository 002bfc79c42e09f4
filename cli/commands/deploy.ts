/** `mesh deploy --site S [--out DIR]`: the files a site needs, from its profile (cli/deploy/). */
import { Command } from 'commander';
import { resolve } from 'node:path';
import { DEFAULT_EVERY_MINUTES, DEFAULT_USER, deploySite } from '../deploy/deploy.js';
import { writeDeployFiles } from '../deploy/files.js';
import { DEFAULT_SFTP_SERVER } from '../deploy/ssh-gate.js';
import { type GlobalOptions, loadConfig } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';
import { packageVersion } from '../version.js';

interface DeployCommandOptions {
  site: string;
  out?: string;
  force?: boolean;
  user: string;
  every: number;
  publicKey?: string;
  sshFrom?: string;
  sftpServer: string;
  ingestDir?: string;
}

export function deployCommand(): Command {
  return new Command('deploy')
    .summary('write what one site needs, from its profile: units, cron line, SSH key line, server settings, README')
    .description(
      'write what one site needs, from its profile: systemd units (long-running sites), the cron/scrontab line, job script template and ' +
        'restricted authorized_keys line (sites woken over SSH), the _security, accounts and replication of a server it hosts, and a README. ' +
        'No file holds a password',
    )
    .requiredOption('--site <site>', 'the site to deploy')
    .option('--out <dir>', 'output folder (default ./couchmesh-<site>); must be empty unless --force')
    .option('--force', 'replace the files deploy writes in a non-empty --out')
    .option('--user <name>', 'the account the systemd units run as', DEFAULT_USER)
    .option('--every <minutes>', 'minutes between two fallback --once passes (cron)', positiveInteger, DEFAULT_EVERY_MINUTES)
    .option('--public-key <file>', "the connecting site's public key for authorized_keys (default: the profile's ssh.identity_file + .pub)")
    .option('--ssh-from <patterns>', 'restrict the key to these client addresses (authorized_keys from=)')
    .option('--sftp-server <path>', 'the sftp-server program on the site, for SFTP transfers landing there', DEFAULT_SFTP_SERVER)
    .option('--ingest-dir <dir>', "the folder the ingest unit scans (default: the ingest site's storage)")
    .action(
      action(async (options: DeployCommandOptions, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const deployment = deploySite(config, options.site, {
          user: options.user,
          everyMinutes: options.every,
          publicKey: options.publicKey,
          sshFrom: options.sshFrom,
          sftpServer: options.sftpServer,
          ingestDir: options.ingestDir,
          version: packageVersion(),
        });
        const out = resolve(options.out ?? `couchmesh-${options.site}`);
        const written = await writeDeployFiles(out, deployment.files, Boolean(options.force));
        for (const path of written) process.stdout.write(`${path}\n`);
        for (const note of deployment.notes) process.stderr.write(`mesh deploy: note: ${note}\n`);
        process.stderr.write(`mesh deploy: ${written.length} files for site ${options.site} in ${out}; read ${resolve(out, 'README.md')}\n`);
      }),
    );
}
