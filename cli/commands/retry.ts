import { Command } from 'commander';
import { userInfo } from 'node:os';
import { type DaqDocument, parseStatus } from '../../core/document.js';
import { MeshError, isMeshError } from '../../core/errors.js';
import { transition } from '../../core/state.js';
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
        const stepNames = config.steps.map((s) => s.name);
        if (options.step && !stepNames.includes(options.step)) throw new MeshError('BAD_INPUT', `--step ${options.step} is not in the pipeline (${stepNames.join(', ')})`);
        const firstSite = options.site ?? config.steps.find((s) => s.name === options.step)?.site ?? config.ingest.site;
        const db = openSiteDatabase(config, siteOf(config, firstSite));
        for (let attempt = 0; attempt < 5; attempt++) {
          const doc = await db.get<DaqDocument>(docId);
          if (!doc) throw new MeshError('BAD_INPUT', `document ${docId} does not exist on ${db.url}`);
          const status = parseStatus(doc.status, stepNames);
          const step = options.step ?? status?.step;
          if (status?.kind !== 'failed' || !step) throw new MeshError('BAD_INPUT', `${docId} is "${doc.status}": nothing has failed there`);
          const next = transition(doc, { type: 'retry', step, by: `operator/${userInfo().username}` }, new Date(), config);
          if (!next.ok) throw new MeshError('BAD_INPUT', next.error.message);
          try {
            await db.put(next.doc);
            process.stdout.write(`${docId}: ${step} is ready again (${next.doc.status})\n`);
            return;
          } catch (error) {
            if (!isMeshError(error, 'CONFLICT')) throw error;
          }
        }
        throw new MeshError('CONFLICT', `${docId} kept changing while retrying; try again`);
      }),
    );
}
