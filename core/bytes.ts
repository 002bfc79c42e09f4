/**
 * Byte counts as people write them in the config ("50GB", "1.5TiB", "500MB", 1000000) and as
 * summaries show them. Decimal units are powers of 1000, binary ones (KiB …) powers of 1024.
 * Pure functions.
 */

const UNIT_BYTES: Readonly<Record<string, number>> = Object.freeze({
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  pb: 1e15,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  pib: 1024 ** 5,
});
const FORM = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;

/** Bytes of a size (a non-negative integer, or a number with a unit), or undefined when `value` is not one. */
export function parseBytes(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = FORM.exec(value.trim());
  if (!match) return undefined;
  const unit = match[2].toLowerCase() || 'b';
  if (!Object.hasOwn(UNIT_BYTES, unit)) return undefined;
  const bytes = Math.round(Number(match[1]) * UNIT_BYTES[unit]);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** The expected form, for error messages. */
export const BYTES_FORM = 'a size in bytes, or with a unit: "500MB", "50GB", "2TB", "100GiB"';

/** `512 B`, `1.5 MB`, `50.0 GB`: decimal units, three significant figures, for humans. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '-';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = Math.max(0, bytes);
  let i = 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(value)} B` : `${value >= 100 ? Math.round(value) : value.toFixed(value >= 10 ? 1 : 2)} ${units[i]}`;
}
