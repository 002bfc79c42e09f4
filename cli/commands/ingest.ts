import { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { BufferReporter } from '../../agents/daq-buffer.js';
import { type IngestReport, ingestDirectory } from '../../agents/ingest.js';
import { MeshError } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';
import { type GlobalOptions, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';

export function ingestCommand(): Command {
  return new Command('ingest')
    .description('catalogue closed DAQ files: one document with status "closed" per file')
    .argument('<dir>', 'directory scanned recursively')
    .requiredOption('--site <site>', "the site that catalogues (the config's ingest.site)")
    .option('--watch', 'keep scanning until interrupted')
    .option('--interval <s>', 'seconds between scans with --watch', positiveInteger, 10)
    .option('--json', 'print the final counts as JSON')
    .action(
      action(async (dir: string, options: { site: string; watch?: boolean; interval: number; json?: boolean }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        const site = siteOf(config, options.site);
        if (config.ingest.site !== site.name)
          throw new MeshError('BAD_INPUT', `site ${site.name} does not ingest; ingest.site is ${config.ingest.site} in ${config.source}`);
        const isDir = await stat(dir).then(
          (s) => s.isDirectory(),
          () => false,
        );
        if (!isDir) throw new MeshError('BAD_INPUT', `${dir} is not a directory`);
        const logger = makeLogger(globals, { site: site.name, agent: 'ingest' });
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        const db = openSiteDatabase(config, site, options.watch ? { retry: 'until-aborted', signal: stop.signal, logger } : {});
        const reported = new Set<string>();
        // file → reason last shown: --watch retries a failed file every scan, and says so once per reason.
        let failing = new Map<string, string>();
        const progress = (r: IngestReport, total: number) => {
          if (total >= 1000 && process.stderr.isTTY) process.stderr.write(`\ringest: ${r.created + r.already}/${total} files`);
          else if (total >= 1000) logger.info({ done: r.created + r.already, total }, 'ingest progress');
        };
        let totals: IngestReport | undefined;
        // The buffer's free space, for the daq_buffer_low alert (agents/daq-buffer.ts).
        const buffer = config.alerts.daq_free_min === undefined ? undefined : new BufferReporter(db, site.name, dir, logger);
        do {
          const report = await ingestDirectory(dir, {
            db,
            docType: config.doc_type,
            ingest: config.ingest,
            stepNames: config.steps.map((s) => s.name),
            site: site.name,
            runs: { steps: (config.run_steps ?? []).map((s) => s.name), quiet_s: config.ingest.run_quiet_s ?? 3600 },
            progress,
            signal: stop.signal,
          });
          if (process.stderr.isTTY && report.seen >= 1000) process.stderr.write('\n');
          for (const r of report.rejected) {
            if (!reported.has(r.file)) logger.warn({ file: r.file }, `not catalogued: ${r.reason}`);
            reported.add(r.file);
          }
          const failed = new Map(report.failed.map((f) => [f.file, f.reason]));
          for (const [file, reason] of failed) {
            if (failing.get(file) !== reason) logger.warn({ file }, `not catalogued this scan, tried again at the next: ${file}: ${reason}`);
          }
          failing = failed;
          for (const l of report.runs?.late ?? [])
            logger.warn({ file: l.file, run: l.run }, `late member of run ${l.run}: its run step had started; recorded in late_members`);
          for (const c of report.runs?.closed ?? []) logger.info({ run: c.run, closed_by: c.by }, `run ${c.run} closed`);
          for (const f of report.runs?.failed ?? []) logger.warn({ run: f.run }, `run document not written, tried again at the next scan: ${f.reason}`);
          if (report.created > 0 || !options.watch)
            logger.info(
              { created: report.created, already: report.already, still_open: report.open, rejected: report.rejected.length, failed: report.failed.length },
              'ingest pass',
            );
          totals = report;
          if (options.watch) await buffer?.report('running');
        } while (options.watch && (await sleep(options.interval * 1000, stop.signal)));
        // The last measurement, on a connection the interruption did not abort.
        if (buffer) await new BufferReporter(openSiteDatabase(config, site), site.name, dir, logger).report('stopped');
        if (options.json && totals) process.stdout.write(`${JSON.stringify(totals)}\n`);
      }),
    );
}
