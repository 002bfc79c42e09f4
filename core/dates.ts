/**
 * Dates as the original scripts wrote them, read as instants. CouchMesh writes ISO 8601 with a
 * zone; a database the original scripts wrote also holds Python's `str(datetime)`
 * (`2013-03-01 10:00:00.123456`, no zone) and `time.time()` (seconds since the epoch, a number).
 * Dates without a zone are read as UTC. The views carry an ES5 port (couchapp/es5.ts
 * `isoDate`); test/unit/dates.test.ts keeps the two in agreement.
 */

const DATE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** Seconds since the epoch below this are seconds; at or above it, milliseconds (year 5138 either way). */
const SECONDS_LIMIT = 1e11;

/** The instant `value` names, in milliseconds since the epoch, or undefined when it names none. */
export function originalDateMs(value: unknown): number | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value <= 0) return undefined;
    return Math.round(value < SECONDS_LIMIT ? value * 1000 : value);
  }
  if (typeof value !== 'string') return undefined;
  const m = DATE.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = m[7] === undefined ? 0 : Number(`${m[7]}00`.slice(0, 3));
  let at = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  // Date.UTC rolls 31 February over into March: such a date names nothing.
  if (new Date(at).getUTCDate() !== day) return undefined;
  const zone = m[8];
  if (zone !== undefined && zone !== 'Z') {
    const digits = zone.replace(':', '');
    const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5));
    at -= (digits[0] === '-' ? -1 : 1) * minutes * 60_000;
  }
  return at;
}

/** `value` as CouchMesh writes dates (ISO 8601, UTC, milliseconds), or undefined. */
export function originalDateIso(value: unknown): string | undefined {
  const at = originalDateMs(value);
  return at === undefined ? undefined : new Date(at).toISOString();
}
