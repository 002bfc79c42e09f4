import type { StepRecord } from '../../core/document.js';

/** A site of the config as the write-rule tests need it: nothing but its name and what it may run matters there. */
export const siteFixture = (name: string, mayRun: string[]) => ({
  name,
  server: 'http://127.0.0.1:1',
  reachable: true,
  long_running: true,
  credentials_of: name,
  log_dir: '/tmp',
  may_run: mayRun,
  mesh: [] as string[],
});

/**
 * Step records as a document holds them (core/document.ts): successes (`ok: true`, or the
 * original scripts' records: no `ok`, no `attempts`) at the top level, the others (claims,
 * failures, released attempts) under `pending`. Lets fixtures list a document's records by step;
 * fields not named like a step (`proc<N>`) are kept as they are.
 */
export function placed(records: Record<string, StepRecord | Record<string, unknown> | unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const pending: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(records)) {
    const record = value as { ok?: unknown; attempts?: unknown } | null;
    const done = record === null || typeof record !== 'object' || record.ok === true || (record.ok === undefined && record.attempts === undefined);
    if (!/^proc\d+$/.test(field) || done) out[field] = value;
    else pending[field] = value;
  }
  if (Object.keys(pending).length > 0) out.pending = pending;
  return out;
}
