/**
 * Step versions (`steps[].version`, recorded in each record): compared in natural order, so
 * that `1.10` comes after `1.9` and `2.0-rc2` after `2.0-rc1`. A record without a version is
 * older than any version.
 */

/** The runs of digits and of other characters of a version: `1.10-rc2` → `1`, `.`, `10`, `-rc`, `2`. */
function chunks(version: string): string[] {
  return version.match(/\d+|\D+/g) ?? [];
}

/** Negative when `a` is older than `b`, positive when newer, 0 when the same (null: no version, the oldest). */
export function compareVersions(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  const x = chunks(a);
  const y = chunks(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i];
    const q = y[i];
    if (p === q) continue;
    const numeric = /^\d/.test(p) && /^\d/.test(q);
    if (numeric) {
      // Digits compared as numbers without losing precision: longer (after leading zeros) is larger.
      const [m, n] = [p.replace(/^0+(?=\d)/, ''), q.replace(/^0+(?=\d)/, '')];
      if (m.length !== n.length) return m.length - n.length;
      if (m !== n) return m < n ? -1 : 1;
      continue;
    }
    return p < q ? -1 : 1;
  }
  if (x.length !== y.length) return x.length - y.length;
  // Same chunks up to leading zeros ("1.01" and "1.1"): the texts decide, so the order is total.
  return a < b ? -1 : 1;
}

/** Whether a record of version `recorded` is older than `current`. */
export function isOlder(recorded: string | null, current: string): boolean {
  return compareVersions(recorded, current) < 0;
}
