import type { StepConfig } from '../config/types.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { type MeshEvent, countedAttempts, transition } from '../core/state.js';
import { type UpdateResult, update, writtenOrThrow } from '../store/update.js';
import { type AgentContext, actor } from './context.js';

/** The document after `event`, or why the event is illegal on it (core/state.ts decides). */
function decide(ctx: AgentContext, event: MeshEvent) {
  return (doc: DaqDocument | undefined) => {
    const next = transition(doc as DaqDocument, { ...event, user: ctx.db.user }, ctx.now(), ctx.config);
    return next.ok ? { write: next.doc } : { illegal: next.error };
  };
}

/**
 * Applies an event to the document exactly as we saw it, with one compare-and-set write and no
 * re-read: the caller decided on that revision (a claim), so a 409 means another writer won.
 * `illegal` (the event is not legal on it, e.g. its attempts are used up) is not a lost race.
 */
export function compareAndSet(ctx: AgentContext, seen: DaqDocument, event: MeshEvent): Promise<UpdateResult<DaqDocument>> {
  return update(ctx.db, seen._id, decide(ctx, event), { seen, rereads: 0 });
}

/** A claim: compareAndSet of a claim event. */
export function claim(ctx: AgentContext, seen: DaqDocument, event: Extract<MeshEvent, { type: 'claim' }>): Promise<UpdateResult<DaqDocument>> {
  return compareAndSet(ctx, seen, event);
}

/**
 * Applies an event to the latest revision, re-reading on 409 (another writer touched the
 * document, e.g. replication or an operator) as long as the event stays legal. Throws
 * ILLEGAL_TRANSITION when it no longer is (for example, the claim was taken over).
 */
export async function apply(ctx: AgentContext, start: DaqDocument, event: MeshEvent): Promise<DaqDocument> {
  return writtenOrThrow(await update(ctx.db, start._id, decide(ctx, event), { seen: start }), start._id);
}

/**
 * A ready step whose counted attempts already reach `max_attempts` (the limit lowered since):
 * no claim of it is legal, so it is recorded `<step> failed` for an operator's retry.
 * `false`: attempts are left; `spent`: no claim, but this write was not the one that recorded it
 * (another copy of the document got there first, or the write failed and is logged);
 * `recorded`: this write made it `<step> failed`.
 */
export async function failIfSpent(ctx: AgentContext, doc: DaqDocument, step: StepConfig): Promise<false | 'spent' | 'recorded'> {
  if (countedAttempts(stepRecord(doc, step.name)) < step.max_attempts) return false;
  const result = await update(ctx.db, doc._id, decide(ctx, { type: 'exhaust', step: step.name, by: actor(ctx) }), { seen: doc, rereads: 0 }).catch(
    (error: unknown) => {
      ctx.logger.warn({ doc: doc._id, step: step.name }, `attempts used up, not recorded: ${errorMessage(error)}`);
      return undefined;
    },
  );
  return result?.kind === 'written' ? 'recorded' : 'spent';
}
