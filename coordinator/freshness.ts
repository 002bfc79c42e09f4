/**
 * How far behind a replication link is, from the markers (store/markers.ts); pure.
 *
 * "kit is N s behind modane" means: kit lacks something modane had N seconds ago, namely
 * modane's oldest marker that has not reached kit. With M = modane's newest marker as read on
 * modane and C = modane's newest marker as read on kit:
 * - C.n ≥ M.n: kit has modane's newest marker: 0 (nothing written on modane before it is missing).
 * - C.n = M.n − 1: the missing marker is M: N = now − M.written (exact).
 * - C.n < M.n − 1: the first missing marker (C.n + 1) was written one round period after C, or
 *   at M.written if earlier: N = now − min(M.written, C.written + C.interval_s).
 * - modane's own marker not read (modane unreachable from the reader): as if the next marker
 *   were written one period after C: N = now − (C.written + C.interval_s), at least 0.
 * - kit holds no modane marker at all: N = now − (when modane's first marker was written).
 * Markers are written at most once per round, so a link is known to the round period: a
 * healthy link reads 0 to a few tenths of a second. Every time compared is the coordinator's
 * clock (it writes them all), so for the coordinator no clock skew enters; another reader
 * (`mesh status` elsewhere) adds its clock's offset from the coordinator's to `now − …`.
 */
import type { Marker } from '../store/markers.js';

export type MarkerReading = Pick<Marker, 'n' | 'written' | 'since' | 'interval_s'>;

export interface LinkFreshness {
  /** Seconds the target is behind the source (see above); null when it cannot be told. */
  behind_s: number | null;
  /** Age of the newest source marker the target holds; null when it holds none or was not read. */
  marker_age_s: number | null;
  /** Why `behind_s` is null. */
  unknown?: string;
}

/** `undefined`: read, and there is no such marker; `'unread'`: the server did not answer. */
export type Seen = MarkerReading | undefined | 'unread';

function seconds(ms: number): number {
  return Math.max(0, Math.round(ms / 100) / 10);
}

/** The freshness of the link source → target at `now` (ms), from the source's marker on the source and on the target. */
export function linkFreshness(onSource: Seen, onTarget: Seen, now: number): LinkFreshness {
  if (onTarget === 'unread') return { behind_s: null, marker_age_s: null, unknown: 'target not read' };
  const source = onSource === 'unread' ? undefined : onSource;
  if (onTarget === undefined) {
    if (!source) return { behind_s: null, marker_age_s: null, unknown: 'no marker written on the source yet' };
    return { behind_s: seconds(now - Date.parse(source.since)), marker_age_s: null };
  }
  const copy = onTarget;
  const copyAt = Date.parse(copy.written);
  const age = seconds(now - copyAt);
  const nextDue = copyAt + copy.interval_s * 1000;
  if (!source) return { behind_s: seconds(now - nextDue), marker_age_s: age };
  if (copy.n >= source.n) return { behind_s: 0, marker_age_s: age };
  const newest = Date.parse(source.written);
  const firstMissing = copy.n === source.n - 1 ? newest : Math.min(newest, nextDue);
  return { behind_s: seconds(now - firstMissing), marker_age_s: age };
}

/** How long a link may stay behind before its job is restarted (also the status pages' "stalled"): 3 rounds, at least a minute. */
export function stallAfterMs(intervalMs: number): number {
  return Math.max(3 * intervalMs, 60_000);
}

/** `kit is 2.5 s behind modane`, or why that is not known. */
export function behindText(from: string, to: string, f: { behind_s: number | null; unknown?: string; behind_unknown?: string }): string {
  const why = f.unknown ?? f.behind_unknown;
  if (f.behind_s === null) return `${to} behind ${from}: unknown${why ? ` (${why})` : ''}`;
  return `${to} is ${f.behind_s} s behind ${from}`;
}
