import { Command, InvalidArgumentError } from 'commander';
import { type Alert, currentAlerts } from '../../coordinator/alerts.js';
import { type ServerFlow, flowsOf, serverFlows } from '../../coordinator/flow.js';
import { behindText } from '../../coordinator/freshness.js';
import { type MeshStatus, meshStatus } from '../../coordinator/status.js';
import { DURATION_FORM, formatDuration, parseDuration } from '../../core/duration.js';
import { type GlobalOptions, loadConfig, openSiteDatabase } from '../context.js';
import { sleep } from '../../core/sleep.js';
import { action } from '../exit.js';
import { positiveNumber } from '../parse.js';

export function statusCommand(): Command {
  return new Command('status')
    .description('counts by status and step, claims in flight, failures, agents, latency against the targets and alerts, for every database')
    .addHelpText(
      'after',
      '\nExit status: 0 when at least one server answered (with --watch: at the last refresh), 1 when none did, 2 for a bad config or argument.',
    )
    .option('--json', 'print one JSON document (with --watch: one line per refresh)')
    .option('--watch', 'refresh until interrupted (in place on a terminal)')
    .option('--interval <s>', 'seconds between two refreshes with --watch', positiveNumber, 2)
    .option(
      '--window <duration>',
      'latency figures over the files finished within this window, e.g. 30m, 2h (default: alerts.window_s of the config)',
      duration,
    )
    .action(
      action(async (options: { json?: boolean; watch?: boolean; interval: number; window?: number }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        do {
          const open = (site: Parameters<typeof openSiteDatabase>[1], database?: string) => openSiteDatabase(config, site, { database });
          const now = new Date();
          const status = await meshStatus(config, open, now);
          // Bounded view reads (at most a few thousand rows per step), so cheap enough for every refresh.
          const flows = await serverFlows(config, open, status, {
            now,
            windowMs: (options.window ?? config.alerts.window_s) * 1000,
            hours: 0,
            maxRows: 1000,
            lateLimit: 5,
          });
          const alerts = await currentAlerts(config, open, status, flowsOf(flows), now);
          const text = options.json ? `${JSON.stringify({ ...status, flow: flows, alerts })}\n` : formatStatus(status, { flows, alerts });
          // On a terminal, redraw in place: cursor home, clear the screen.
          process.stdout.write(options.watch && !options.json && process.stdout.isTTY ? `\x1b[H\x1b[2J${status.generated}\n${text}` : text);
          // A script must not read "no server answered" as a healthy mesh.
          process.exitCode = status.databases.some((db) => db.reachable) ? 0 : 1;
        } while (options.watch && (await sleep(options.interval * 1000, stop.signal)));
      }),
    );
}

function duration(text: string): number {
  const seconds = parseDuration(text);
  if (seconds === undefined) throw new InvalidArgumentError(`"${text}" is not ${DURATION_FORM}`);
  return seconds;
}

export function formatStatus(status: MeshStatus, extra: { flows?: ServerFlow[]; alerts?: Alert[] } = {}): string {
  const lines: string[] = [];
  for (const db of status.databases) {
    lines.push(
      `${db.site}  ${db.url}/${status.database}  ${db.reachable ? `${db.doc_count} documents` : db.not_authorised ? db.error : `UNREACHABLE: ${db.error}`}`,
    );
    if (!db.reachable) continue;
    lines.push(
      `  by status: ${
        Object.entries(db.by_status)
          .map(([k, v]) => `${k}=${v}`)
          .join('  ') || '(empty)'
      }`,
    );
    lines.push(`  ${'step'.padEnd(10)}${['done', 'ready', 'queued', 'in progress', 'failed'].map((h) => h.padStart(12)).join('')}`);
    for (const [step, c] of Object.entries(db.steps)) {
      lines.push(`  ${step.padEnd(10)}${[c.done, c.ready, c.queued, c.in_progress, c.failed].map((n) => String(n).padStart(12)).join('')}`);
    }
    if (db.conflicts > 0) lines.push(`  conflicts: ${db.conflicts}`);
    for (const f of db.in_flight)
      lines.push(`  in flight: ${f.doc} ${f.step} by ${f.site}/${f.agent} attempt ${f.attempts}, ${f.lease_age_s}s old${f.expired ? ', LEASE EXPIRED' : ''}`);
    for (const f of db.failed) lines.push(`  failed: ${f.doc} ${f.step}: ${f.reason}${f.exit_code === null ? '' : ` (exit ${f.exit_code})`}`);
  }
  if (status.replication.length > 0) lines.push('replication:');
  for (const r of status.replication) {
    const marker = r.marker_age_s === null ? '' : ` (${r.from}'s newest marker there written ${r.marker_age_s} s ago)`;
    lines.push(
      `  ${r.from} → ${r.to} (job on ${r.on}): ${r.state}${r.reason ? ` (${r.reason})` : ''}; ${behindText(r.from, r.to, r)}${marker}${r.stalled ? ', STALLED' : ''}${r.pending === null ? '' : `; ${r.pending} pending (CouchDB's count)`}`,
    );
  }
  lines.push(`double claims: ${status.double_claims.detected} detected, ${status.double_claims.resolved} resolved`);
  lines.push(`agents (${status.agents.length}):`);
  for (const a of status.agents)
    lines.push(
      `  ${a.site}/${a.agent} on ${a.host}: ${a.state}, last seen ${a.age_s}s ago${a.running.length ? `, running ${a.running.map((r) => `${r.doc}:${r.step}`).join(' ')}` : ''}`,
    );
  for (const f of extra.flows ?? []) lines.push(...formatFlow(f));
  if (extra.alerts) {
    lines.push(`alerts (${extra.alerts.length}):${extra.alerts.length ? '' : ' none'}`);
    for (const a of extra.alerts) lines.push(`  ${a.kind} since ${a.since}: ${a.message}`, `    what to do: ${a.action}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Latency against the targets: per step, files done in the window, p50/p95 of the stage and from DAQ close, the target, the late files. */
function formatFlow({ site, flow, error }: ServerFlow): string[] {
  if (!flow) return [`flow on ${site}: not available (${error})`];
  const lines = [`flow on ${site}, files finished in the last ${formatDuration(flow.window_s)}:`];
  const head = ['finished', 'stage p50', 'stage p95', 'close p50', 'close p95', 'target', 'late'];
  lines.push(`  ${'step'.padEnd(10)}${head.map((h) => h.padStart(11)).join('')}`);
  for (const l of flow.latency) {
    const cells = [
      String(l.count) + (l.capped ? '*' : ''),
      ...[l.p50_s, l.p95_s, l.close_p50_s, l.close_p95_s, l.target_s].map(formatDuration),
      l.target_s === null ? '-' : String(l.late_count),
    ];
    lines.push(`  ${l.stage.padEnd(10)}${cells.map((c) => c.padStart(11)).join('')}${l.target_s !== null && l.late_count > 0 ? '  LATE' : ''}`);
    for (const f of l.late) lines.push(`    late ${l.stage}: ${f.doc} ${formatDuration(f.latency_s)} since DAQ close${f.done ? '' : ', not done yet'}`);
  }
  if (flow.latency.some((l) => l.capped)) lines.push(`  * more files than the ${flow.row_cap} newest read per step: quantiles over those`);
  return lines;
}
