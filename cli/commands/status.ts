import { Command, InvalidArgumentError } from 'commander';
import { type Alert, currentAlerts } from '../../coordinator/alerts.js';
import { type ServerFlow, flowsOf, serverFlows } from '../../coordinator/flow.js';
import { behindText } from '../../coordinator/freshness.js';
import { runsText } from '../../coordinator/runs-status.js';
import { type FullMeshStatus, type StepCounts, meshStatus } from '../../coordinator/status.js';
import { failedCount, statusExitCode, statusSummary } from '../../coordinator/summary.js';
import { DURATION_FORM, formatDuration, parseDuration } from '../../core/duration.js';
import { type GlobalOptions, loadConfig, openSiteDatabase } from '../context.js';
import { sleep } from '../../core/sleep.js';
import { utcClock } from '../../core/progress.js';
import { action } from '../exit.js';
import { positiveNumber } from '../parse.js';

export function statusCommand(): Command {
  return new Command('status')
    .description(
      'the worst state in one line, then counts per step (each file once), failures with the command to retry them, claims in flight, alerts, servers, replication, agents and latency against the targets',
    )
    .addHelpText(
      'after',
      '\nExit status (with --watch: of the last refresh): 0 all well; 1 a file failed or an alert holds (a stalled step, a silent agent, …); 2 bad config or argument; 3 a server could not be read (unreachable or not authorised), whatever else holds.',
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
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
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
          const summary = statusSummary(status, alerts, now);
          const exitStatus = statusExitCode(status, alerts);
          const text = options.json
            ? `${JSON.stringify({ ...status, flow: flows, alerts, summary, exit_status: exitStatus })}\n`
            : formatStatus(status, { flows, alerts, mesh: meshCommand(globals.config) });
          // On a terminal, redraw in place: cursor home, clear the screen.
          process.stdout.write(options.watch && !options.json && process.stdout.isTTY ? `\x1b[H\x1b[2J${status.generated}\n${text}` : text);
          // A script must not read "a server could not be read" or "a file failed" as a healthy mesh.
          process.exitCode = exitStatus;
        } while (options.watch && (await sleep(options.interval * 1000, stop.signal)));
      }),
    );
}

/** `mesh` with the `--config` this run was given, for the commands the output suggests. */
function meshCommand(configFile: string | undefined): string {
  if (configFile === undefined) return 'mesh';
  return `mesh --config ${/^[\w./@:+-]+$/.test(configFile) ? configFile : `'${configFile.replace(/'/g, "'\\''")}'`}`;
}

function duration(text: string): number {
  const seconds = parseDuration(text);
  if (seconds === undefined) throw new InvalidArgumentError(`"${text}" is not ${DURATION_FORM}`);
  return seconds;
}

/** Per step, the done records older than the config's version (from the server its counts come from), with the command that re-makes them. */
function olderVersionLines(status: FullMeshStatus, mesh: string): string[] {
  const lines: string[] = [];
  for (const step of Object.keys(status.files.steps)) {
    const from =
      status.databases.find((d) => d.site === status.files.steps_from[step] && d.older_versions) ?? status.databases.find((d) => d.older_versions?.[step]);
    const entry = from?.older_versions?.[step];
    if (entry && entry.older > 0)
      lines.push(`  ${step}: ${entry.older} done records older than version ${entry.version} (${mesh} reprocess ${step} counts them, --yes re-makes them)`);
  }
  return lines;
}

const COUNT_HEADS = ['done', 'ready', 'queued', 'in progress', 'failed'];

function countRow(label: string, c: StepCounts, tail = ''): string {
  return `  ${label.padEnd(10)}${[c.done, c.ready, c.queued, c.in_progress, c.failed].map((n) => String(n).padStart(12)).join('')}${tail}`;
}

const COUNTS = ['done', 'ready', 'queued', 'in_progress', 'failed'] as const;
const sameCounts = (a: StepCounts | undefined, b: StepCounts) => !!a && COUNTS.every((k) => a[k] === b[k]);
const on = (servers: readonly string[]) => servers.join(' and ');

/** The operators' pauses and drains, each with who, why and since; nothing when there are none. */
function controlLines(status: FullMeshStatus, now: Date): string[] {
  const lines: string[] = [];
  const servers = status.databases.length;
  for (const [title, marks, verb] of [
    ['paused steps', status.controls?.paused ?? [], 'resume'],
    ['drained sites', status.controls?.drained ?? [], 'undrain'],
  ] as const) {
    if (marks.length === 0) continue;
    lines.push(`${title} (${marks.length}):`);
    for (const m of marks) {
      const where = m.servers.length < servers ? `, only on ${m.servers.join(', ')} so far` : '';
      lines.push(`  ${m.target} since ${utcClock(m.since, now)} by ${m.by}${m.user ? ` (${m.user})` : ''}: ${m.why}${where}`);
      lines.push(`    ${verb}: mesh ${verb} ${m.target} --why TEXT`);
    }
  }
  return lines;
}

export function formatStatus(status: FullMeshStatus, extra: { flows?: ServerFlow[]; alerts?: Alert[]; mesh?: string } = {}): string {
  const now = new Date(status.generated);
  const alerts = extra.alerts ?? [];
  const mesh = extra.mesh ?? 'mesh';
  const lines: string[] = [statusSummary(status, alerts, now).text];
  const readable = status.databases.filter((d) => d.reachable);
  const nothingRead = readable.length === 0;

  if (!nothingRead) {
    const f = status.files;
    lines.push(`files: ${f.count}, each counted once (documents on ${f.count_from}; each step's counts from the server its agents claim on)`);
    lines.push(`  ${'step'.padEnd(10)}${COUNT_HEADS.map((h) => h.padStart(12)).join('')}  from`);
    for (const [step, c] of Object.entries(f.steps)) lines.push(countRow(step, c, `  ${f.steps_from[step] ?? '-'}`));
    lines.push(...olderVersionLines(status, mesh));
    for (const d of f.differences) lines.push(`  ${d.text}`);
    if (f.conflicts > 0) lines.push(`  conflicts: ${f.conflicts} documents`);
    const failedTotal = failedCount(status);
    lines.push(
      `failed (${failedTotal})${status.failed.length < failedTotal ? `, the first ${status.failed.length} listed` : ''}:${failedTotal === 0 ? ' none' : ''}`,
    );
    for (const x of status.failed) {
      lines.push(`  ${x.doc} ${x.step}: ${x.reason}${x.exit_code === null ? '' : ` (exit ${x.exit_code})`}, on ${on(x.servers)}`);
      const tail = (x.stderr_tail ?? '').trimEnd().split('\n').filter(Boolean).slice(-5);
      tail.forEach((line, i) => lines.push(`    ${i === 0 ? 'stderr: ' : '        '}${line}`));
      lines.push(`    retry:  ${mesh} retry ${x.doc} --step ${x.step}`);
    }
    lines.push(...controlLines(status, now));
    lines.push(`in flight (${status.in_flight.length}):${status.in_flight.length === 0 ? ' none' : ''}`);
    for (const c of status.in_flight)
      lines.push(
        `  ${c.doc} ${c.step} by ${c.site}/${c.agent} attempt ${c.attempts}, ${c.lease_age_s}s old${c.expired ? ', LEASE EXPIRED' : ''}, on ${on(c.servers)}`,
      );
    lines.push(`alerts (${alerts.length}):${alerts.length ? '' : ' none'}`);
    for (const a of alerts) lines.push(`  ${a.kind} since ${a.since}: ${a.message}`, `    what to do: ${a.action}`);
  }

  lines.push('servers:');
  for (const db of status.databases) {
    lines.push(
      `  ${db.site}  ${db.url}/${status.database}  ${db.reachable ? `${db.doc_count} documents` : db.not_authorised ? db.error : `${db.unreachable ? 'UNREACHABLE' : 'COULD NOT BE READ'}: ${db.error}`}`,
    );
    if (!db.reachable) continue;
    lines.push(
      `    by status: ${
        Object.entries(db.by_status)
          .map(([k, v]) => `${k}=${v}`)
          .join('  ') || '(empty)'
      }`,
    );
    // Its own counts only where its copy differs from the numbers above.
    for (const [step, c] of Object.entries(db.steps)) {
      if (status.files.steps_from[step] !== db.site && !sameCounts(status.files.steps[step], c)) lines.push(`  ${countRow(step, c, `  (${db.site}'s copy)`)}`);
    }
  }
  if (status.replication.length > 0) lines.push('replication:');
  for (const r of status.replication) {
    const marker = r.marker_age_s === null ? '' : ` (${r.from}'s newest marker there written ${r.marker_age_s} s ago)`;
    lines.push(
      `  ${r.from} → ${r.to} (job on ${r.on}): ${r.state}${r.reason ? ` (${r.reason})` : ''}; ${behindText(r.from, r.to, r)}${marker}${r.stalled ? ', STALLED' : ''}${r.pending === null ? '' : `; ${r.pending} pending (CouchDB's count)`}`,
    );
  }
  if (nothingRead) {
    // Nothing read is not "no agents, no alerts": say so instead of empty lists.
    lines.push('agents, alerts, double claims and latency: unknown, no server could be read');
    return `${lines.join('\n')}\n`;
  }
  lines.push(`double claims: ${status.double_claims.detected} detected, ${status.double_claims.resolved} resolved`);
  if (status.runs) lines.push(...runsText(status.runs));
  lines.push(`agents (${status.agents.length}):`);
  for (const a of status.agents)
    lines.push(
      `  ${a.site}/${a.agent} on ${a.host}: ${a.state}, last seen ${a.age_s}s ago${a.running.length ? `, running ${a.running.map((r) => `${r.doc}:${r.step}`).join(' ')}` : ''}${a.last_run ? `; ${lastRunText(a.last_run)}` : ''}`,
    );
  for (const f of extra.flows ?? []) lines.push(...formatFlow(f));
  return `${lines.join('\n')}\n`;
}

/** A `--once` identity's run: `last run lyon-vm-4242 (started …): ok after 1.2 s`, or `… : not finished`. */
function lastRunText(run: NonNullable<FullMeshStatus['agents'][number]['last_run']>): string {
  const took = run.finished ? (Date.parse(run.finished) - Date.parse(run.started)) / 1000 : Number.NaN;
  const end = run.outcome ? `${run.outcome}${Number.isFinite(took) ? ` after ${took.toFixed(1)} s` : ''}` : 'not finished';
  return `last run ${run.agent} (started ${run.started}): ${end}`;
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
