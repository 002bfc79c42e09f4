import { Command, InvalidArgumentError } from 'commander';
import { userInfo } from 'node:os';
import { type PurgeSummary, purgeDaqBuffer } from '../../agents/purge.js';
import type { MeshConfig } from '../../config/types.js';
import { formatBytes } from '../../core/bytes.js';
import { DEFAULT_COPIES } from '../../core/custody.js';
import { DURATION_FORM, formatDuration, parseDuration } from '../../core/duration.js';
import { MeshError } from '../../core/errors.js';
import { type GlobalOptions, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';

/** How old a file must be by default (its date_closed) before the DAQ may delete it. */
export const DEFAULT_OLDER_THAN = '1d';

function duration(text: string): number {
  const seconds = parseDuration(text);
  if (seconds === undefined) throw new InvalidArgumentError(`"${text}" is not ${DURATION_FORM}`);
  return seconds;
}

/** The summary a shift crew reads: what went, what stays and why. */
export function formatPurgeSummary(summary: PurgeSummary, site: string): string {
  const plural = (n: number, word: string, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;
  const lines = [
    summary.dry_run ? `purge at ${site}: dry run, nothing deleted (run again with --yes to delete)` : `purge at ${site}`,
    `  rule: ${plural(summary.copies, 'agreeing copy', 'agreeing copies')} at distinct sites other than ${site}, closed before ${summary.closed_before}`,
    `  examined ${plural(summary.examined, 'file')} not yet deleted; ${formatBytes(summary.bytes_read)} read again to compare with the catalogue`,
    `  ${summary.dry_run ? 'would delete' : 'deleted'} ${plural(summary.deleted.files, 'file')}, ${formatBytes(summary.deleted.bytes)}${summary.dry_run ? ' would be' : ''} freed`,
  ];
  if (summary.finished.files > 0)
    lines.push(
      `  ${summary.dry_run ? 'would finish' : 'finished'} ${plural(summary.finished.files, 'purge')} recorded by an earlier run (${formatBytes(summary.finished.bytes)})`,
    );
  const held = Object.entries(summary.held);
  const heldFiles = held.reduce((n, [, h]) => n + (h?.files ?? 0), 0);
  if (held.length === 0) lines.push('  held back: none');
  else lines.push(`  held back ${plural(heldFiles, 'file')}, ${formatBytes(held.reduce((n, [, h]) => n + (h?.bytes ?? 0), 0))}:`);
  for (const [reason, h] of held.sort((a, b) => (b[1]?.files ?? 0) - (a[1]?.files ?? 0))) {
    if (!h) continue;
    lines.push(`    ${reason}: ${plural(h.files, 'file')}, ${formatBytes(h.bytes)}`);
    // Every disagreeing copy and changed source is listed (up to the examples kept); a few of the others.
    const listed = reason === 'a copy disagrees' || reason === 'changed on disk' ? h.examples : h.examples.slice(0, 3);
    for (const e of listed) lines.push(`      ${e.doc} (${e.file}): ${e.detail}`);
    if (h.files > listed.length) lines.push(`      … and ${h.files - listed.length} more`);
  }
  return `${lines.join('\n')}\n`;
}

/** Refuses options that the config makes wrong or impossible. */
export function checkPurgeOptions(config: MeshConfig, site: string, copies: number): void {
  if (config.ingest.site !== site)
    throw new MeshError(
      'BAD_INPUT',
      `site ${site} is not the DAQ site: mesh purge deletes raw files where they are catalogued (ingest.site is ${config.ingest.site} in ${config.source})`,
    );
  const others = Object.keys(config.sites).filter((s) => s !== site);
  if (copies > others.length)
    throw new MeshError('BAD_INPUT', `--copies ${copies} can never be met: there are ${others.length} sites other than ${site} (${others.join(', ')})`);
  if (!config.steps.some((s) => s.custody === true))
    throw new MeshError('BAD_INPUT', `no step of ${config.source} has "custody": true, so no copy is ever verified and nothing can be purged`);
}

export function purgeCommand(): Command {
  return new Command('purge')
    .description('delete raw files from the DAQ buffer once enough verified copies exist elsewhere (dry run unless --yes)')
    .requiredOption('--site <site>', "the DAQ site (the config's ingest.site); only its own server's documents are read")
    .option('--copies <n>', 'agreeing verified copies needed, each at a distinct site other than the DAQ', positiveInteger, DEFAULT_COPIES)
    .option('--older-than <duration>', 'keep files closed more recently than this (e.g. "12h", "7d")', duration, parseDuration(DEFAULT_OLDER_THAN))
    .option('--dry-run', 'say what would be deleted, delete nothing (the default)')
    .option('--yes', 'really delete')
    .option('--json', 'print the summary as JSON')
    .action(
      action(async (options: { site: string; copies: number; olderThan: number; dryRun?: boolean; yes?: boolean; json?: boolean }, command: Command) => {
        if (options.dryRun && options.yes) throw new MeshError('BAD_INPUT', '--dry-run and --yes contradict each other: give one');
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        const site = siteOf(config, options.site);
        checkPurgeOptions(config, site.name, options.copies);
        const logger = makeLogger(globals, { site: site.name, agent: 'purge' });
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        const db = openSiteDatabase(config, site, { signal: stop.signal, logger });
        const now = new Date();
        let shown = 0;
        const summary = await purgeDaqBuffer(
          { config, site, db, by: `${site.name}/purge-${userInfo().username}`, logger },
          {
            copies: options.copies,
            closedBefore: new Date(now.getTime() - options.olderThan * 1000),
            dryRun: !options.yes,
            now: () => new Date(),
            signal: stop.signal,
            // A line a second at most: a long purge reads every candidate file again.
            progress: (examined, read) => {
              if (Date.now() - shown < 1000) return;
              shown = Date.now();
              if (process.stderr.isTTY) process.stderr.write(`\rpurge: ${examined} files examined, ${formatBytes(read)} read`);
              else logger.info({ examined, bytes_read: read }, 'purge progress');
            },
          },
        );
        if (shown > 0 && process.stderr.isTTY) process.stderr.write('\n');
        if (stop.signal.aborted) logger.warn(`interrupted after ${formatDuration((Date.now() - now.getTime()) / 1000)}: the summary covers what was done`);
        process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatPurgeSummary(summary, site.name));
      }),
    );
}
