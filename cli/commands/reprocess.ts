import { Command } from 'commander';
import { userInfo } from 'node:os';
import { formatBytes } from '../../core/bytes.js';
import { type ReprocessPlan, planReprocess, runRange, runReprocess } from '../../coordinator/reprocess.js';
import { MeshError } from '../../core/errors.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

interface ReprocessOptions {
  runs?: string;
  run?: string;
  belowVersion?: string;
  dryRun?: boolean;
  yes?: boolean;
  why?: string;
  site?: string;
}

export function reprocessCommand(): Command {
  return new Command('reprocess')
    .description(
      "make a done step ready again where its record is older than the config's version (the old records are kept in superseded[]; the later steps re-run after it); counts only, unless --yes",
    )
    .argument('<step>', 'the step whose program changed (its steps[].version names the new version)')
    .option('--runs <first..last>', 'only the runs from first to last, both included')
    .option('--run <run>', 'only this run')
    .option('--below-version <version>', 'only records of versions below this one (natural order: 1.10 is after 1.9; a record without a version is below any)')
    .option('--dry-run', 'count the documents and the bytes of their inputs, show a sample, change nothing (the default)')
    .option('--yes', 'reprocess them, with progress and a summary')
    .option('--why <text>', 'why, recorded in every document touched (required with --yes)')
    .option('--site <site>', "site whose server the documents are written to (default: the step's site)")
    .addHelpText(
      'after',
      '\nAn operator account writes it (role mesh-operator): the server refuses a reprocess from any other. Exit status: 0 done (or counted); 1 some documents were refused or kept changing; 2 bad config or argument.',
    )
    .action(
      action(async (stepName: string, options: ReprocessOptions, command: Command) => {
        if (options.yes && options.dryRun) throw new MeshError('BAD_INPUT', '--dry-run and --yes contradict each other: give one of them');
        const why = options.why?.trim();
        if (options.yes && !why)
          throw new MeshError('BAD_INPUT', '--why is missing: with --yes, say why the step is reprocessed (it is recorded in each document)');
        if (options.belowVersion !== undefined && options.belowVersion.length === 0)
          throw new MeshError('BAD_INPUT', '--below-version is empty, expected a version (e.g. 2.0)');
        const runs = runRange(options);
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const step = config.steps.find((s) => s.name === stepName);
        const db = openSiteDatabase(config, siteOf(config, options.site ?? step?.site));
        const plan = await planReprocess(config, db, { step: stepName, runs, belowVersion: options.belowVersion });
        process.stdout.write(describePlan(plan));
        if (!options.yes || plan.documents === 0) {
          if (plan.documents > 0) process.stdout.write('dry run: nothing changed; add --yes --why TEXT to reprocess them\n');
          return;
        }
        const started = Date.now();
        let shown = 0;
        const summary = await runReprocess(config, db, plan, {
          why: why as string,
          by: `operator/${userInfo().username}`,
          onProgress: ({ done, total }) => {
            if (Date.now() - shown < 1000 && done < total) return;
            shown = Date.now();
            process.stderr.write(`reprocess ${plan.step.name}: ${done}/${total}\n`);
          },
        });
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        process.stdout.write(
          `${plan.step.name} ready again on ${summary.reprocessed} documents (${formatBytes(summary.bytes)} of inputs) in ${seconds} s; ${summary.skipped} already at the version or no longer done\n`,
        );
        for (const { doc, reason } of summary.refused.slice(0, 20)) process.stdout.write(`  refused ${doc}: ${reason}\n`);
        if (summary.refused.length > 20) process.stdout.write(`  … and ${summary.refused.length - 20} more refused\n`);
        if (summary.conflicts.length > 0)
          process.stdout.write(`  ${summary.conflicts.length} kept changing (e.g. ${summary.conflicts[0]}): run the command again\n`);
        if (summary.refused.length > 0 || summary.conflicts.length > 0) process.exitCode = 1;
      }),
    );
}

function describePlan(plan: ReprocessPlan): string {
  const { step, target, selection, versions } = plan;
  const runs = selection.runs
    ? selection.runs.from === selection.runs.to
      ? `run ${selection.runs.from}`
      : `runs ${selection.runs.from}..${selection.runs.to}`
    : 'all runs';
  const below = selection.belowVersion === undefined ? '' : `, below ${selection.belowVersion}`;
  const lines = [`${step.name}: version ${target} in the config; records older${below}, ${runs}:`];
  if (versions.length === 0) lines.push('  none: nothing to reprocess');
  for (const v of versions)
    lines.push(`  ${(v.version ?? '(none)').padEnd(16)}${String(v.documents).padStart(8)} documents ${formatBytes(v.bytes).padStart(10)}`);
  if (versions.length > 0) lines.push(`${plan.documents} documents, ${formatBytes(plan.bytes)} of inputs`);
  if (plan.sample.length > 0) lines.push(`e.g. ${plan.sample.map((s) => s.doc).join(', ')}`);
  return `${lines.join('\n')}\n`;
}
