/**
 * `mesh deploy --site S`: every file the site needs, from its profile and the config (plan.ts):
 * systemd units and their environment files for a site that may keep processes alive, the
 * cron/scrontab line and job script template of one that may not, the authorized_keys line of a
 * site others reach over SSH, the settings of a server it hosts, and its README. No file holds a
 * password; missing information is an error that names it.
 */
import type { MeshConfig } from '../../config/types.js';
import { MeshError } from '../../core/errors.js';
import type { DeployFile } from './files.js';
import { onceFiles } from './once.js';
import { sitePlan } from './plan.js';
import { onceCredentialsNote, readme } from './readme.js';
import { serverFiles } from './server.js';
import { DEFAULT_SFTP_SERVER, authorizedKeysLine, readPublicKey } from './ssh-gate.js';
import { systemdFiles } from './systemd.js';

export interface DeployOptions {
  /** The account the units run as (default `couchmesh`). */
  user?: string;
  /** Minutes between two fallback passes of a --once site (default 15). */
  everyMinutes?: number;
  /** The public key of the connecting site's identity (default: the profile's `ssh.identity_file` + `.pub`). */
  publicKey?: string;
  /** An authorized_keys `from=` pattern list restricting where the key may connect from. */
  sshFrom?: string;
  sftpServer?: string;
  ingestDir?: string;
  /** The package's version, for the README's install line. */
  version: string;
}

export interface Deployment {
  files: DeployFile[];
  /** Things the operator must know that are not errors (printed on stderr, and in the README). */
  notes: string[];
}

export const DEFAULT_USER = 'couchmesh';
export const DEFAULT_EVERY_MINUTES = 15;

export function deploySite(config: MeshConfig, siteName: string, options: DeployOptions): Deployment {
  const plan = sitePlan(config, siteName, { ingestDir: options.ingestDir });
  const user = options.user ?? DEFAULT_USER;
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user))
    throw new MeshError('BAD_INPUT', `--user ${JSON.stringify(user)} is not a system account name (lower case, digits, _ and -)`);
  const everyMinutes = options.everyMinutes ?? DEFAULT_EVERY_MINUTES;
  if (!Number.isInteger(everyMinutes) || everyMinutes < 1 || everyMinutes > 1440 || (everyMinutes > 60 && everyMinutes % 60 !== 0))
    throw new MeshError('BAD_INPUT', `--every ${everyMinutes}: expected minutes from 1 to 60, or whole hours up to 1440`);
  const files: DeployFile[] = [...systemdFiles(plan, user), ...onceFiles(plan, everyMinutes)];
  if (plan.triggeredBy.length > 0 || plan.transfersIn.length > 0) {
    const identity = plan.site.ssh?.identity_file;
    const publicKeyFile = options.publicKey ?? (identity ? `${identity}.pub` : undefined);
    if (!publicKeyFile) throw new MeshError('CONFIG_INVALID', `sites.${siteName}.ssh is not set, but other sites reach ${siteName} over SSH`);
    let key;
    try {
      key = readPublicKey(publicKeyFile);
    } catch (error) {
      if (options.publicKey) throw error;
      throw new MeshError(
        'BAD_INPUT',
        `${(error as Error).message}; the authorized_keys line needs the public key of sites.${siteName}.ssh.identity_file: pass it with --public-key FILE`,
        { cause: error },
      );
    }
    files.push({
      path: 'ssh/authorized_keys',
      content: authorizedKeysLine(plan, key, { sftpServer: options.sftpServer ?? DEFAULT_SFTP_SERVER, from: options.sshFrom }),
      installAs: `~${plan.site.ssh?.user}/.ssh/authorized_keys (append)`,
      mode: 0o600,
    });
  }
  files.push(...serverFiles(plan));
  const notes = [onceCredentialsNote(plan)].filter((n): n is string => n !== undefined);
  const readmeFile: DeployFile = { path: 'README.md', content: '', installAs: '(read it)', mode: 0o644 };
  const all = [readmeFile, ...files];
  readmeFile.content = readme(plan, all, { user, version: options.version, everyMinutes, credentialsNote: notes[0] });
  return { files: all, notes };
}
