/**
 * The alerts of a chain that is stuck while every count looks normal, pure over `mesh status`
 * and the evidence of alert-evidence.ts, with defaults that need no `targets`:
 * - `step_stalled`: a step has ready documents and nothing has claimed or finished one for `alerts.stalled_s`;
 * - `site_failing`: the last `alerts.failing_runs` runs a trigger started at a site, or the site's
 *   last batch jobs, ended badly (with the reason the run gave);
 * - `site_unheard`: a site holds claims in flight and none of its agents was heard from for `alerts.unheard_s`;
 * - `replication_behind`: a replication link is more than `alerts.replication_behind_s` behind.
 * Servers are replicas: what any of them shows of activity counts, and counts are the largest seen.
 */
import type { MeshConfig } from '../config/types.js';
import { formatDuration } from '../core/duration.js';
import type { TriggerRecord } from '../store/triggers.js';
import type { AlertEvidence } from './alert-evidence.js';
import type { Alert } from './alert.js';
import type { MeshCounts, MeshStatus } from './status.js';

export function stuckAlerts(status: MeshStatus, evidence: AlertEvidence, config: MeshConfig, now: Date): Alert[] {
  return [
    ...stalledSteps(status, evidence, config, now),
    ...failingRuns(evidence, config, now),
    ...failingJobs(evidence, config, now),
    ...unheardSites(status, evidence, config, now),
    ...replicationBehind(status, config, now),
  ];
}

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : Number.NaN);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Who starts a site's agents, for the "what to do" texts. */
function howSiteRuns(config: MeshConfig, site: string): string {
  const profile = config.sites[site];
  if (!profile || profile.long_running) return `the agents of ${site} (\`mesh agent --site ${site}\`) are running`;
  const by = profile.ssh ? Object.values(config.sites).find((s) => s.long_running && s.name !== site) : undefined;
  return `the runs of ${site}'s agent (\`mesh agent --site ${site} --once\`) are started (${by ? `by the agent of ${by.name} over SSH` : 'by cron or a trigger'}) and end well`;
}

function stalledSteps(status: MeshStatus, evidence: AlertEvidence, config: MeshConfig, now: Date): Alert[] {
  const limitMs = config.alerts.stalled_s * 1000;
  const alerts: Alert[] = [];
  for (const step of config.steps) {
    // Each file once: the mesh-wide count where the status has it (files-once.ts), else the largest replica's.
    const once = (status as Partial<MeshCounts>).files?.steps[step.name]?.ready;
    const ready = once ?? Math.max(0, ...status.databases.filter((d) => d.reachable).map((d) => d.steps[step.name]?.ready ?? 0));
    if (ready === 0) continue;
    // An operator's pause or drain holds the step on purpose: `mesh status` shows it, with who and why.
    if (status.controls?.paused.some((p) => p.target === step.name) || status.controls?.drained.some((d) => d.target === step.site)) continue;
    const seen = evidence.servers.map((s) => s.steps[step.name]).filter((e) => e !== undefined);
    const waiting = Math.min(...seen.map((e) => ms(e.waiting_since)).filter(Number.isFinite));
    if (!Number.isFinite(waiting)) continue;
    // Anything of the step running, or claimed or finished within the limit, is activity: a queue, not a stall.
    if (seen.some((e) => e.live_claims > 0)) continue;
    const lastActivity = Math.max(waiting, ...seen.flatMap((e) => [ms(e.newest_claim), ms(e.last_finished)]).filter(Number.isFinite));
    if (now.getTime() - lastActivity < limitMs) continue;
    const lastDone = Math.max(...seen.map((e) => ms(e.last_finished)).filter(Number.isFinite));
    const server = config.sites[step.site]?.server;
    alerts.push({
      kind: 'step_stalled',
      key: `step_stalled:${step.name}`,
      message:
        `${step.name}: ${plural(ready, 'document')} ready and none claimed for ${formatDuration((now.getTime() - lastActivity) / 1000)}` +
        ` (site ${step.site} runs it; ${Number.isFinite(lastDone) ? `last done ${formatDuration((now.getTime() - lastDone) / 1000)} ago` : 'never done yet'})`,
      action:
        `Check that ${howSiteRuns(config, step.site)} and that they can log in to their server${server ? ` (${server})` : ''} and write to it: ` +
        `a site_failing or site_unheard alert names the reason; \`mesh status\` lists the agents heard from. Ready documents are claimed by the next run that works.`,
      // Since the step went idle, as agent_silent counts from the last heartbeat: "proc1 stalled 12 min" in the summary.
      since: new Date(lastActivity).toISOString(),
    });
  }
  return alerts;
}

/** Per triggered site, the record written last (by any triggering site): the runs in a row that it counts. */
function newestTriggerRecords(evidence: AlertEvidence): Map<string, TriggerRecord> {
  const newest = new Map<string, TriggerRecord>();
  for (const record of evidence.servers.flatMap((s) => s.triggers)) {
    const known = newest.get(record.target);
    if (!known || ms(record.updated) > ms(known.updated)) newest.set(record.target, record);
  }
  return newest;
}

function runsAction(target: string, reason: string): string {
  const credentials = /\b40[13]\b|unauthori[sz]ed|not authori[sz]ed|locked|credentials|password/i.test(reason);
  const ssh = /\bssh\b|host key|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH/i.test(reason);
  return [
    `The runs of ${target}'s agent end before doing any work.`,
    credentials
      ? `The server refuses ${target}'s login: check the account and password file its \`mesh\` command line names (MESH_<SERVER>_USER, MESH_<SERVER>_PASSWORD_FILE) and \`mesh accounts\`; 5 failed logins lock an account for 5 minutes.`
      : ssh
        ? `The trigger cannot reach ${target}: check the site's ssh settings (host, port, user, identity_file, host_key_sha256) and that sshd runs there.`
        : `Run \`mesh agent --site ${target} --once\` on ${target} by hand to see it fail, and fix what it says.`,
    'The alert clears at the next run that ends well.',
  ].join(' ');
}

function failingRuns(evidence: AlertEvidence, config: MeshConfig, now: Date): Alert[] {
  const alerts: Alert[] = [];
  for (const [target, record] of newestTriggerRecords(evidence)) {
    const failing = record.failing;
    if (!failing || failing.runs < config.alerts.failing_runs) continue;
    const span = (ms(record.last.ended) - ms(failing.since)) / 1000;
    alerts.push({
      kind: 'site_failing',
      key: `site_failing:${target}:runs`,
      message:
        `${target}: ${plural(failing.runs, 'run')} failed${Number.isFinite(span) ? ` in ${formatDuration(span)}` : ''}: ${failing.reason}` +
        ` (started by ${record.site}/${record.agent}; last ${record.last.how}, ${formatDuration((now.getTime() - ms(record.last.ended)) / 1000)} ago)`,
      action: runsAction(target, failing.reason),
      since: failing.since,
    });
  }
  return alerts;
}

function failingJobs(evidence: AlertEvidence, config: MeshConfig, now: Date): Alert[] {
  const alerts: Alert[] = [];
  for (const site of Object.values(config.sites).filter((s) => s.batch)) {
    const seen = evidence.servers.map((s) => s.lost[site.name]).filter((l) => l !== undefined);
    const worst = seen.sort((a, b) => b.count - a.count)[0];
    if (!worst || worst.count < config.alerts.failing_runs) continue;
    const newest = worst.newest;
    alerts.push({
      kind: 'site_failing',
      key: `site_failing:${site.name}:batch`,
      message:
        `${site.name}: ${worst.capped ? 'at least ' : ''}${plural(worst.count, 'batch job')} lost since its last success` +
        (newest ? `: ${newest.reason} (${newest.step} of ${newest.doc})` : ''),
      action:
        `Jobs of ${site.name} end without recording a result. Read a job's stderr (the document's ${newest?.step ?? 'step'} record names the job and its output files) ` +
        `and ask the scheduler (\`scontrol show job ID\`, \`qacct -j ID\`): on the nodes the mesh command, the password file or the storage may be missing. The documents are retried by themselves.`,
      since: worst.oldest_started ?? now.toISOString(),
    });
  }
  return alerts;
}

function unheardSites(status: MeshStatus, evidence: AlertEvidence, config: MeshConfig, now: Date): Alert[] {
  const limitMs = config.alerts.unheard_s * 1000;
  const holders = new Set(evidence.servers.flatMap((s) => Object.keys(s.claims)));
  const alerts: Alert[] = [];
  for (const site of holders) {
    const claims = evidence.servers.map((s) => s.claims[site]).filter((c) => c !== undefined);
    const count = Math.max(...claims.map((c) => c.count));
    if (count === 0) continue;
    const beats = status.agents.filter((a) => a.site === site).map((a) => ms(a.last_seen));
    const heard = Math.max(...beats.filter(Number.isFinite), ...claims.map((c) => ms(c.newest_started)).filter(Number.isFinite));
    if (Number.isFinite(heard) && now.getTime() - heard < limitMs) continue;
    const capped = claims.some((c) => c.capped) ? 'at least ' : '';
    alerts.push({
      kind: 'site_unheard',
      key: `site_unheard:${site}`,
      message:
        `${site} holds ${capped}${plural(count, 'claim')} in flight but ` +
        (beats.some(Number.isFinite)
          ? `none of its agents was heard from for ${formatDuration((now.getTime() - heard) / 1000)}`
          : `no agent of ${site} has written a heartbeat`),
      action:
        `Check that ${howSiteRuns(config, site)}: the claims are checked (a lapsed lease taken over, a lost batch job given back) only when an agent of ${site} runs. ` +
        'A site_failing alert, if any, says why its runs fail.',
      since: new Date(Number.isFinite(heard) ? heard + limitMs : now.getTime()).toISOString(),
    });
  }
  return alerts;
}

function replicationBehind(status: MeshStatus, config: MeshConfig, now: Date): Alert[] {
  const limit = config.alerts.replication_behind_s;
  return status.replication
    .filter((r) => r.behind_s !== null && r.behind_s > limit)
    .map((r) => ({
      kind: 'replication_behind',
      key: `replication_behind:${r.from}->${r.to}`,
      message: `${r.to} is ${formatDuration(r.behind_s)} behind ${r.from} (limit ${formatDuration(limit)}; job on ${r.on}: ${r.state}${r.reason ? `, ${r.reason}` : ''}${r.stalled ? ', stalled' : ''})`,
      action:
        `Check that the server of ${r.on} (which runs the job) reaches both servers and that the job's account may write (\`mesh status\` shows the job's state and reason); ` +
        'the coordinator restarts a stalled job by itself. Meanwhile the two servers disagree: counts on each show what it has received.',
      since: new Date(now.getTime() - (r.behind_s as number) * 1000).toISOString(),
    }));
}
