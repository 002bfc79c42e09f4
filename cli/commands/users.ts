import { Command, InvalidArgumentError } from 'commander';
import { distinctServers } from '../../coordinator/servers.js';
import { MeshError } from '../../core/errors.js';
import { type MeshRoleName, roleFor } from '../../core/roles.js';
import { checkAccountName, upsertAccount } from '../accounts.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { readPassword } from '../password-input.js';

const ROLES: readonly MeshRoleName[] = ['agent', 'operator', 'reader', 'coordinator'];

function roleName(text: string): MeshRoleName {
  if (!(ROLES as readonly string[]).includes(text)) throw new InvalidArgumentError(`"${text}" is not a role: expected one of ${ROLES.join(', ')}`);
  return text as MeshRoleName;
}

export function usersCommand(): Command {
  const users = new Command('users').description("accounts of the mesh in the servers' _users databases");
  users
    .command('add')
    .description(
      "create or update an account with one mesh role (agent of a site, operator, reader, coordinator) on every server of the mesh, or on --server's only. " +
        'The password comes from --password-file, a prompt on the terminal (not echoed), or the first line of stdin; never from the command line. ' +
        'Uses the server admin credentials MESH_<SITE>_USER and MESH_<SITE>_PASSWORD (or _PASSWORD_FILE).',
    )
    .argument('<name>', 'account name')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`, roleName)
    .option('--site <site>', 'the site an agent account runs for (required with --role agent)')
    .option('--server <site>', "write the account on this site's server only (default: every server of the mesh)")
    .option('--password-file <file>', 'read the password from the first line of this file')
    .action(
      action(async (name: string, options: { role: MeshRoleName; site?: string; server?: string; passwordFile?: string }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        checkAccountName(name);
        if (options.role === 'agent' && !options.site)
          throw new MeshError('BAD_INPUT', '--role agent needs --site <site>: the site whose steps the account may run');
        if (options.role !== 'agent' && options.site) throw new MeshError('BAD_INPUT', `--site applies to --role agent only, not to ${options.role}`);
        const site = options.site ? siteOf(config, options.site).name : undefined;
        const servers = options.server ? [siteOf(config, options.server)] : distinctServers(config);
        const role = roleFor(options.role, site);
        const password = await readPassword({ passwordFile: options.passwordFile, prompt: `password for ${name}: ` });
        for (const server of servers) {
          const outcome = await upsertAccount(openSiteDatabase(config, server, { database: '_users' }), name, password, [role]);
          process.stdout.write(`${server.name} ${server.server}: account ${name} ${outcome} (role ${role})\n`);
        }
      }),
    );
  return users;
}
