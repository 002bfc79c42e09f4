import { Command } from 'commander';
import { type AdoptReport, adoptDatabase } from '../../coordinator/adopt.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

export function adoptCommand(): Command {
  return new Command('adopt')
    .description(
      'take over a database the original scripts wrote: record what CouchMesh needs to continue each document, rewriting no history (run mesh couchapp push first)',
    )
    .addHelpText(
      'after',
      [
        '',
        'Documents already consistent are left as they are (a step record present means done).',
        '<step> failed gains a pending record of the failure; <step> in progress / queued without a',
        'claim goes back to waiting and runs again. Documents the write rules would refuse are',
        'reported and left alone. Writes as the coordinator (MESH_<SITE>_REPLICATION_USER, else the',
        "site's credentials): the account needs the mesh-coordinator role.",
        '',
        'Exit status: 0 when every change was written (or --dry-run), 1 when a write failed, 2 for a bad config or argument.',
      ].join('\n'),
    )
    .requiredOption('--site <site>', 'site whose server holds the database')
    .option('--dry-run', 'print what would change, per status, and write nothing')
    .option('--retry-failed', 'also make the steps that failed under the original scripts ready again')
    .option('--json', 'print the report as JSON')
    .action(
      action(async (options: { site: string; dryRun?: boolean; retryFailed?: boolean; json?: boolean }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const site = siteOf(config, options.site);
        const db = openSiteDatabase(config, site, { as: 'coordinator' });
        const session = await db.session().catch(() => undefined);
        const progress =
          process.stderr.isTTY && !options.json ? (r: AdoptReport) => process.stderr.write(`\r${r.documents} documents read, ${r.written} written`) : undefined;
        const report = await adoptDatabase(db, config, {
          now: new Date(),
          by: 'mesh/adopt',
          user: session?.name ?? null,
          retryFailed: options.retryFailed === true,
          dryRun: options.dryRun === true,
          progress,
        });
        if (progress) process.stderr.write('\n');
        process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatReport(report, `${site.server}/${config.database}`, options.dryRun === true));
        process.exitCode = report.failed.length > 0 ? 1 : 0;
      }),
    );
}

/** One line per status and outcome; what would change (or changed) and why documents were left alone. */
export function formatReport(report: AdoptReport, where: string, dryRun: boolean): string {
  const lines = [`${where}: ${report.documents} documents of the pipeline, ${report.other} others (not touched)${dryRun ? ' — dry run, nothing written' : ''}`];
  const width = Math.max(6, ...Object.keys(report.byStatus).map((s) => s.length));
  for (const [status, entry] of Object.entries(report.byStatus).sort(([a], [b]) => a.localeCompare(b))) {
    if (entry.keep > 0) lines.push(`  ${status.padEnd(width)}  ${String(entry.keep).padStart(6)}  kept as they are`);
    for (const [change, count] of Object.entries(entry.changes))
      lines.push(`  ${status.padEnd(width)}  ${String(count).padStart(6)}  ${dryRun ? 'would change: ' : ''}${change}`);
    for (const [reason, count] of Object.entries(entry.reasons)) lines.push(`  ${status.padEnd(width)}  ${String(count).padStart(6)}  left alone: ${reason}`);
  }
  if (!dryRun) lines.push(`${report.written} written, ${report.failed.length} not written`);
  for (const failure of report.failed.slice(0, 20)) lines.push(`  not written: ${failure.id}: ${failure.error}`);
  if (report.failed.length > 20) lines.push(`  … and ${report.failed.length - 20} more (--json lists them all)`);
  return `${lines.join('\n')}\n`;
}
