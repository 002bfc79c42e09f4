import { Command } from 'commander';
import { userInfo } from 'node:os';
import { type BulkRetryResult, bulkRetry, reasonPattern } from '../../coordinator/bulk-retry.js';
import { retryFailedStep, retrySite } from '../../coordinator/retry.js';
import { MeshError } from '../../core/errors.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { requiredWhy } from '../why.js';

interface RetryOptions {
  step?: string;
  site?: string;
  failed?: boolean;
  reason?: string;
  run?: string;
  dryRun?: boolean;
  why?: string;
}

/** The documents a bulk retry touches at once; progress is printed after this many and at the end. */
const PROGRESS_EVERY = 100;

export function retryCommand(): Command {
  return new Command('retry')
    .description('make a failed step ready again (its history and the failure are kept): one document, or with --step S --failed every failed one')
    .argument('[doc_id]', 'document id (omit with --failed)')
    .option('--step <step>', 'the failed step (default: the one the status names; required with --failed)')
    .option('--site <site>', 'site whose server holds the documents (default: the site of the step)')
    .option('--failed', 'every document whose --step failed for good (narrow with --reason and --run)')
    .option('--reason <regex>', 'with --failed: only failures whose reason matches this regular expression')
    .option('--run <run_name>', 'with --failed: only the files of this run')
    .option('--dry-run', 'with --failed: count and show a sample, change nothing')
    .option('--why <text>', 'why, kept in each retried document’s history (required with --failed unless --dry-run)')
    .addHelpText('after', '\nExample: mesh retry --step proc1 --failed --reason "exit code 137" --run lg23b002 --why "OOM on lyon-17, node fixed"')
    .action(
      action(async (docId: string | undefined, options: RetryOptions, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const by = `operator/${userInfo().username}`;
        if (options.failed) {
          if (docId !== undefined) throw new MeshError('BAD_INPUT', `give a document id or --failed, not both (${docId})`);
          if (options.step === undefined) throw new MeshError('BAD_INPUT', '--failed needs --step S: the step whose failed documents are retried');
          const why = options.dryRun ? (options.why ?? '') : requiredWhy(options.why, 'retry');
          const db = openSiteDatabase(config, siteOf(config, options.site ?? retrySite(config, options.step)));
          const filter = {
            step: options.step,
            ...(options.reason !== undefined ? { reason: reasonPattern(options.reason) } : {}),
            ...(options.run !== undefined ? { run: options.run } : {}),
          };
          const result = await bulkRetry(config, db, filter, {
            dryRun: Boolean(options.dryRun),
            by,
            why,
            onProgress: (done, total) => {
              if (total > PROGRESS_EVERY && (done % PROGRESS_EVERY === 0 || done === total)) process.stderr.write(`retried ${done} of ${total}\n`);
            },
          });
          process.stdout.write(bulkSummary(options, result));
          if (result.errors.length > 0) process.exitCode = 1;
          return;
        }
        for (const [flag, given] of [
          ['--reason', options.reason],
          ['--run', options.run],
          ['--dry-run', options.dryRun],
        ] as const)
          if (given !== undefined) throw new MeshError('BAD_INPUT', `${flag} goes with --failed (mesh retry --step S --failed ${flag} …)`);
        if (docId === undefined) throw new MeshError('BAD_INPUT', 'give a document id, or --step S --failed for every failed document of a step');
        const why = options.why === undefined ? undefined : requiredWhy(options.why, 'retry');
        const firstSite = options.site ?? retrySite(config, options.step);
        const db = openSiteDatabase(config, siteOf(config, firstSite));
        const result = await retryFailedStep(config, db, docId, { step: options.step, by, ...(why ? { why } : {}) });
        process.stdout.write(`${docId}: ${result.step} is ready again (${result.status})\n`);
      }),
    );
}

function bulkSummary(options: RetryOptions, result: BulkRetryResult): string {
  const what = `failed ${options.step} document(s)${options.run !== undefined ? ` of run ${options.run}` : ''}${options.reason !== undefined ? ` whose reason matches /${options.reason}/` : ''}`;
  const lines: string[] = [];
  if (options.dryRun) {
    lines.push(`dry run: ${result.matched} ${what} would be retried; nothing changed`);
    for (const m of result.sample) lines.push(`  ${m.doc}  ${m.reason ?? '(no reason recorded)'}`);
    if (result.matched > result.sample.length) lines.push(`  … and ${result.matched - result.sample.length} more`);
  } else {
    lines.push(`retried ${result.retried} of ${result.matched} ${what}`);
    if (result.moved_on > 0) lines.push(`  ${result.moved_on} had moved on meanwhile (no longer failed, or no longer matching): left alone`);
    for (const e of result.errors.slice(0, 10)) lines.push(`  ${e.doc}: ${e.error}`);
    if (result.errors.length > 10) lines.push(`  … and ${result.errors.length - 10} more errors`);
  }
  return `${lines.join('\n')}\n`;
}
