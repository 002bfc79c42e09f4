/**
 * The operators' controls document, `mesh:controls` (core/operator-controls.ts): read by agents
 * and the status page, written by operators with a compare-and-set.
 */
import { CONTROLS_ID, type ControlAction, type OperatorControls, applyControl, asControls, noControls } from '../core/operator-controls.js';
import type { Database } from './database.js';
import { update, writtenOrThrow } from './update.js';

/** The controls as stored, or undefined when no operator wrote any yet. Transport errors throw (the caller keeps what it knew). */
export async function readControls(db: Database, options: { signal?: AbortSignal } = {}): Promise<OperatorControls | undefined> {
  return asControls(await db.get<unknown>(CONTROLS_ID, {}, options));
}

/** Applies one action; `changed` is false when it was already so (then nothing is written). */
export async function writeControl(
  db: Database,
  action: ControlAction,
  target: string,
  who: { by: string; why: string },
  now = new Date(),
): Promise<{ changed: boolean; controls: OperatorControls }> {
  const result = await update<OperatorControls>(
    db,
    CONTROLS_ID,
    (stored) => {
      const next = applyControl(asControls(stored) ?? noControls(), action, target, { ...who, user: db.user }, now);
      return next ? { write: next } : { keep: true };
    },
    { create: true },
  );
  const doc = writtenOrThrow(result, CONTROLS_ID);
  return { changed: result.kind === 'written' && result.changed, controls: asControls(doc) ?? noControls() };
}
