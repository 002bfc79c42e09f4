import type { StepRecord } from '../../core/document.js';

/**
 * Step records as a document holds them (core/document.ts): successes (`ok: true`) at the top
 * level, the others under `pending`. Lets fixtures list a document's records by step; fields
 * not named like a step (`proc<N>`) are kept as they are.
 */
export function placed(records: Record<string, StepRecord | Record<string, unknown> | unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const pending: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(records)) {
    const record = value as { ok?: unknown } | null;
    if (!/^proc\d+$/.test(field) || record === null || typeof record !== 'object' || record.ok === true) out[field] = value;
    else pending[field] = value;
  }
  if (Object.keys(pending).length > 0) out.pending = pending;
  return out;
}
