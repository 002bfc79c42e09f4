/**
 * A batch site's walltime: what the scheduler kills a job at. Given as `batch.walltime`, or read
 * from the submission options the site already passes (`--time` for Slurm, `-l h_rt` for Grid
 * Engine). Pure functions.
 */
import { parseDuration } from '../core/duration.js';
import type { BatchConfig } from './types.js';

/** The batch systems, as the config names them. */
export type BatchSystemName = BatchConfig['system'];

/**
 * Slurm's `--time` forms (sbatch(1)): "minutes", "minutes:seconds", "hours:minutes:seconds",
 * "days-hours", "days-hours:minutes", "days-hours:minutes:seconds". `INFINITE`/`UNLIMITED` → undefined.
 */
export function parseSlurmTime(text: string): number | undefined {
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(text.trim());
  if (!m) return undefined;
  const [, days, a, b, c] = m;
  const n = (s: string | undefined) => (s === undefined ? 0 : Number(s));
  let seconds: number;
  if (days !== undefined) seconds = n(days) * 86_400 + n(a) * 3600 + n(b) * 60 + n(c);
  else if (c !== undefined) seconds = n(a) * 3600 + n(b) * 60 + n(c);
  else seconds = n(a) * 60 + n(b);
  return seconds > 0 ? seconds : undefined;
}

/** Grid Engine's time values (sge_types(1)): seconds, or `[[hours:]minutes:]seconds`. */
export function parseSgeTime(text: string): number | undefined {
  const parts = text.trim().split(':');
  if (parts.length > 3 || !parts.every((p) => /^\d+$/.test(p))) return undefined;
  const seconds = parts.reduce((total, part) => total * 60 + Number(part), 0);
  return seconds > 0 ? seconds : undefined;
}

/**
 * A `batch.walltime` value: a duration ("2h"), seconds as a number, or the clock form both
 * schedulers read alike ("02:00:00", "30:00", "1-12:00:00"). A bare number in a string is refused:
 * Slurm reads it as minutes, Grid Engine as seconds.
 */
export function parseWalltime(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isFinite(raw) && raw > 0 ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  if (/^\d+-/.test(raw)) return parseSlurmTime(raw);
  return raw.includes(':') ? parseSgeTime(raw) : parseDuration(raw);
}

export const WALLTIME_FORM = 'a walltime such as "2h", "90m", "02:00:00", "1-00:00:00" or a number of seconds';

/** The walltime the submission options already ask for, with the option that says it; undefined when none. */
export function walltimeInOptions(system: BatchSystemName, options: readonly string[]): { seconds: number | undefined; option: string } | undefined {
  for (let i = 0; i < options.length; i++) {
    const option = options[i];
    if (system === 'slurm') {
      const inline = /^(?:--time=|-t)(.+)$/.exec(option)?.[1];
      const value = inline ?? (option === '--time' || option === '-t' ? options[i + 1] : undefined);
      if (value !== undefined) return { seconds: parseSlurmTime(value), option: inline !== undefined ? option : `${option} ${value}` };
    } else {
      const resources = option === '-l' ? options[i + 1] : undefined;
      const hRt = resources
        ?.split(',')
        .map((r) => /^h_rt=(.+)$/.exec(r.trim())?.[1])
        .find((v) => v !== undefined);
      if (hRt !== undefined) return { seconds: parseSgeTime(hRt), option: `-l ${resources}` };
    }
  }
  return undefined;
}

/** The submission options that ask the scheduler for `seconds` of walltime. */
export function walltimeOptions(system: BatchSystemName, seconds: number): string[] {
  const s = Math.ceil(seconds);
  if (system === 'sge') return ['-l', `h_rt=${s}`];
  const pad = (n: number) => String(n).padStart(2, '0');
  return [`--time=${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`];
}

/**
 * How many documents of a step one job may hold: `docs_per_job`, lowered so that every one of
 * them can run its whole `timeout_s` inside the walltime (at least one).
 */
export function documentsPerJob(docsPerJob: number, walltimeS: number | undefined, timeoutS: number): { count: number; lowered: boolean } {
  if (walltimeS === undefined) return { count: docsPerJob, lowered: false };
  const fit = Math.max(1, Math.floor(walltimeS / timeoutS));
  return fit < docsPerJob ? { count: fit, lowered: true } : { count: docsPerJob, lowered: false };
}
