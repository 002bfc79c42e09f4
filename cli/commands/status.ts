import { Command } from 'commander';
import { type MeshStatus, meshStatus } from '../../coordinator/status.js';
import { type GlobalOptions, loadConfig, openSiteDatabase } from '../context.js';
import { sleep } from '../../core/sleep.js';
import { action } from '../exit.js';
import { positiveNumber } from '../parse.js';

export function statusCommand(): Command {
  return new Command('status')
    .description('counts by status and step, claims in flight, failures and agents, for every database')
    .option('--json', 'print one JSON document (with --watch: one line per refresh)')
    .option('--watch', 'refresh until interrupted (in place on a terminal)')
    .option('--interval <s>', 'seconds between two refreshes with --watch', positiveNumber, 2)
    .action(
      action(async (options: { json?: boolean; watch?: boolean; interval: number }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        do {
          const status = await meshStatus(config, (site, database) => openSiteDatabase(config, site, { database }));
          const text = options.json ? `${JSON.stringify(status)}\n` : formatStatus(status);
          // On a terminal, redraw in place: cursor home, clear the screen.
          process.stdout.write(options.watch && !options.json && process.stdout.isTTY ? `\x1b[H\x1b[2J${status.generated}\n${text}` : text);
        } while (options.watch && (await sleep(options.interval * 1000, stop.signal)));
      }),
    );
}

export function formatStatus(status: MeshStatus): string {
  const lines: string[] = [];
  for (const db of status.databases) {
    lines.push(`${db.site}  ${db.url}/${status.database}  ${db.reachable ? `${db.doc_count} documents` : `UNREACHABLE: ${db.error}`}`);
    if (!db.reachable) continue;
    lines.push(`  by status: ${Object.entries(db.by_status).map(([k, v]) => `${k}=${v}`).join('  ') || '(empty)'}`);
    lines.push(`  ${'step'.padEnd(10)}${['done', 'ready', 'queued', 'in progress', 'failed'].map((h) => h.padStart(12)).join('')}`);
    for (const [step, c] of Object.entries(db.steps)) {
      lines.push(`  ${step.padEnd(10)}${[c.done, c.ready, c.queued, c.in_progress, c.failed].map((n) => String(n).padStart(12)).join('')}`);
    }
    if (db.conflicts > 0) lines.push(`  conflicts: ${db.conflicts}`);
    for (const f of db.in_flight) lines.push(`  in flight: ${f.doc} ${f.step} by ${f.site}/${f.agent} attempt ${f.attempts}, ${f.lease_age_s}s old${f.expired ? ', LEASE EXPIRED' : ''}`);
    for (const f of db.failed) lines.push(`  failed: ${f.doc} ${f.step}: ${f.reason}${f.exit_code === null ? '' : ` (exit ${f.exit_code})`}`);
  }
  if (status.replication.length > 0) lines.push('replication:');
  for (const r of status.replication) lines.push(`  ${r.from} → ${r.to} (job on ${r.on}): ${r.state}${r.pending === null ? '' : `, ${r.pending} pending`}`);
  lines.push(`double claims: ${status.double_claims.detected} detected, ${status.double_claims.resolved} resolved`);
  lines.push(`agents (${status.agents.length}):`);
  for (const a of status.agents) lines.push(`  ${a.site}/${a.agent} on ${a.host}: ${a.state}, last seen ${a.age_s}s ago${a.running.length ? `, running ${a.running.map((r) => `${r.doc}:${r.step}`).join(' ')}` : ''}`);
  return `${lines.join('\n')}\n`;
}
