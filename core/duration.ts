/**
 * Durations as people write them in the config ("90s", "30m", "2h", "1d", "1h30m") and as the
 * status output shows them. Pure functions, no clock.
 */

const UNIT_SECONDS: Readonly<Record<string, number>> = Object.freeze({ s: 1, m: 60, h: 3600, d: 86_400 });
const WHOLE = /^(?:\d+(?:\.\d+)?[smhd])+$/;
const PART = /(\d+(?:\.\d+)?)([smhd])/g;

/** Seconds of a duration string, or undefined when `text` is not one (e.g. "2 hours", "-5m", "0s", 7200). */
export function parseDuration(text: unknown): number | undefined {
  if (typeof text !== 'string' || !WHOLE.test(text)) return undefined;
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(PART)) seconds += Number(amount) * UNIT_SECONDS[unit];
  return Number.isFinite(seconds) && seconds > 0 ? seconds : undefined;
}

/** The expected form, for error messages. */
export const DURATION_FORM = 'a duration such as "90s", "30m", "2h", "1d" or "1h30m"';

/** `42s`, `5m 03s`, `2h 07m`, `3d 04h`: two units at most, for humans. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d ${pad(Math.floor((s % 86_400) / 3600))}h`;
}
