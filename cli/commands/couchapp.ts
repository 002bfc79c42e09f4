import { Command } from 'commander';
import { designDocument } from '../../couchapp/design.js';
import { originalDesignDocument } from '../../couchapp/original-design.js';
import { designDocuments, pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { distinctServers } from '../../coordinator/status.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

export function couchappCommand(): Command {
  const couchapp = new Command('couchapp').description('design documents generated from the pipeline config');
  couchapp
    .command('push')
    .description(
      "create the database if needed, push _design/mesh, the original scripts' _design/proc (config original_design) and the database _security admitting the mesh roles (nothing written when unchanged; needs the server admin)",
    )
    .option('--site <site>', "push to this site's server only (default: every server of the mesh)")
    .action(
      action(async (options: { site?: string }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const sites = options.site ? [siteOf(config, options.site)] : distinctServers(config);
        designDocuments(config); // a pipeline the designs cannot be made of is refused before any server is touched
        for (const site of sites) {
          const db = openSiteDatabase(config, site);
          await db.ensure();
          for (const result of await pushDesigns(db, config)) {
            process.stdout.write(`${site.name} ${site.server}/${config.database}: ${result.id} ${result.changed ? 'updated' : 'unchanged'} (${result.rev})\n`);
          }
          const security = await pushSecurity(db, Object.keys(config.sites));
          process.stdout.write(
            `${site.name} ${site.server}/${config.database}: _security ${security.changed ? 'updated' : 'unchanged'} (members: ${security.security.members.roles.join(', ')})\n`,
          );
        }
      }),
    );
  couchapp
    .command('show')
    .description("print the generated _design/mesh as JSON (with --original, the original scripts' _design/proc)")
    .option('--original', "print the original scripts' design document instead")
    .action(
      action((options: { original?: boolean }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const design = options.original ? originalDesignDocument(config) : designDocument(config);
        process.stdout.write(`${JSON.stringify(design, null, 2)}\n`);
      }),
    );
  return couchapp;
}
