import { Command } from 'commander';
import { userInfo } from 'node:os';
import { retryFailedStep, retrySite } from '../../coordinator/retry.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

export function retryCommand(): Command {
  return new Command('retry')
    .description('make a failed step ready again (its history and the failure are kept)')
    .argument('<doc_id>', 'document id')
    .option('--step <step>', 'the failed step (default: the one the status names)')
    .option('--site <site>', 'site whose server holds the document (default: the site of the step)')
    .action(
      action(async (docId: string, options: { step?: string; site?: string }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const firstSite = options.site ?? retrySite(config, options.step);
        const db = openSiteDatabase(config, siteOf(config, firstSite));
        const result = await retryFailedStep(config, db, docId, { step: options.step, by: `operator/${userInfo().username}` });
        process.stdout.write(`${docId}: ${result.step} is ready again (${result.status})\n`);
      }),
    );
}
