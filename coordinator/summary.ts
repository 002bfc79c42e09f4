/**
 * The mesh's worst state in one line ("4 failed · kit unreachable · proc1 stalled 12 min"): the
 * status page's header and tab title and the first line of `mesh status` say the same. And the
 * exit status of `mesh status` a cron job can use.
 */
import { shortAge } from '../core/progress.js';
import type { Alert } from './alerts.js';
import type { FullMeshStatus } from './status.js';

export type SummaryLevel = 'ok' | 'warning' | 'bad';

export interface StatusSummary {
  /** The parts joined with " · ", worst first. */
  text: string;
  /** The worst of the parts. */
  level: SummaryLevel;
  parts: Array<{ text: string; level: SummaryLevel }>;
}

/** `mesh status` exit statuses (2, bad input, is the CLI's own for every command). */
export const STATUS_EXIT = Object.freeze({ ok: 0, attention: 1, badInput: 2, unreadable: 3 });

/** Failed files mesh-wide, each once. */
export function failedCount(status: Pick<FullMeshStatus, 'files'>): number {
  return Object.values(status.files.steps).reduce((sum, c) => sum + c.failed, 0);
}

/** Why a server could not be read, named right: a server that refused is up, one that answered an error is not down. */
export function unreadableWords(u: { not_authorised?: true; unreachable?: true }): string {
  return u.not_authorised ? 'not authorised' : u.unreachable ? 'unreachable' : 'could not be read';
}

/** The words of one alert in the summary: its subject (the key after the kind), what holds, for how long. */
export function alertPhrase(alert: Alert, now: Date): string {
  const colon = alert.key.indexOf(':');
  const subject = colon >= 0 ? alert.key.slice(colon + 1) : '';
  const since = Date.parse(alert.since);
  const age = Number.isFinite(since) ? ` ${shortAge((now.getTime() - since) / 1000)}` : '';
  const first = subject.split(':')[0];
  switch (alert.kind) {
    case 'agent_silent':
      return `agent ${subject} silent${age}`;
    case 'latency_target':
      return `${subject} late for its target`;
    case 'step_stalled':
      return `${subject} stalled${age}`;
    case 'site_failing':
      return `${first} ${subject.endsWith(':batch') ? 'batch jobs' : 'runs'} failing${age}`;
    case 'site_unheard':
      return `${subject} not heard from${age}`;
    case 'replication_behind':
      return `replication ${subject.replace('->', '→')} behind${age}`;
    default:
      return `${subject ? `${subject} ` : ''}${String(alert.kind).replace(/_/g, ' ')}${age}`;
  }
}

export function statusSummary(
  status: Pick<FullMeshStatus, 'files' | 'unreadable' | 'databases' | 'in_flight'>,
  alerts: readonly Alert[],
  now: Date,
): StatusSummary {
  const parts: StatusSummary['parts'] = [];
  const nothingRead = status.databases.length > 0 && status.unreadable.length === status.databases.length;
  const why = (u: FullMeshStatus['unreadable'][number]) => `${u.server} ${unreadableWords(u)}`;
  if (nothingRead) {
    // Not "0 failed, no alert": nothing is known, and the line says why.
    const refused = status.unreadable.every((u) => u.not_authorised);
    parts.push({
      text: refused
        ? `not authorised: nothing could be read (${status.unreadable.map((u) => u.server).join(', ')})`
        : `nothing could be read (${status.unreadable.map(why).join(', ')})`,
      level: 'bad',
    });
  }
  const failed = failedCount(status);
  if (failed > 0) parts.push({ text: `${failed} failed`, level: 'bad' });
  if (!nothingRead) for (const u of status.unreadable) parts.push({ text: why(u), level: 'bad' });
  for (const alert of alerts) parts.push({ text: alertPhrase(alert, now), level: 'warning' });
  if (parts.length === 0) {
    const running = Object.values(status.files.steps).reduce((sum, c) => sum + c.in_progress + c.queued, 0);
    parts.push({
      text: `all well · ${status.files.count} file${status.files.count === 1 ? '' : 's'}${running > 0 ? ` · ${running} running` : ''}`,
      level: 'ok',
    });
  }
  const level = parts.some((p) => p.level === 'bad') ? 'bad' : parts.some((p) => p.level === 'warning') ? 'warning' : 'ok';
  return { text: parts.map((p) => p.text).join(' · '), level, parts };
}

/** 3 when a server could not be read (the numbers may be missing something), else 1 when a file failed or an alert holds, else 0. */
export function statusExitCode(status: Pick<FullMeshStatus, 'files' | 'unreadable'>, alerts: readonly Alert[]): number {
  if (status.unreadable.length > 0) return STATUS_EXIT.unreadable;
  if (failedCount(status) > 0 || alerts.length > 0) return STATUS_EXIT.attention;
  return STATUS_EXIT.ok;
}
