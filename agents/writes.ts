import type { StepConfig } from '../config/types.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import { type MeshEvent, countedAttempts, transition } from '../core/state.js';
import { type AgentContext, actor } from './context.js';

/**
 * Claims a step with one compare-and-set write of the document as we saw it.
 * Returns the claimed document, or undefined when another agent won the race (409)
 * or the step is no longer claimable.
 */
export async function claim(ctx: AgentContext, seen: DaqDocument, event: Extract<MeshEvent, { type: 'claim' }>): Promise<DaqDocument | undefined> {
  return compareAndSet(ctx, seen, event);
}

/**
 * Applies an event to the document exactly as we saw it, with one compare-and-set write.
 * Returns the new document, or undefined when the event is illegal on it or someone wrote
 * first (409): the caller decided on that revision, so it must not re-apply blindly.
 */
export async function compareAndSet(ctx: AgentContext, seen: DaqDocument, event: MeshEvent): Promise<DaqDocument | undefined> {
  const next = transition(seen, { ...event, user: ctx.db.user }, ctx.now(), ctx.config);
  if (!next.ok) return undefined;
  try {
    const rev = await ctx.db.put(next.doc);
    return { ...next.doc, _rev: rev };
  } catch (error) {
    if (isMeshError(error, 'CONFLICT')) return undefined;
    throw error;
  }
}

/**
 * Applies an event to the latest revision, re-reading on 409 (another writer touched the
 * document, e.g. replication or an operator) as long as the event stays legal.
 * Throws ILLEGAL_TRANSITION when it no longer is (for example, the claim was taken over).
 */
export async function apply(ctx: AgentContext, start: DaqDocument, event: MeshEvent, attempts = 8): Promise<DaqDocument> {
  let doc: DaqDocument | undefined = start;
  for (let attempt = 1; ; attempt++) {
    if (!doc) throw new MeshError('NOT_FOUND', `${start._id} disappeared`);
    const next = transition(doc, { ...event, user: ctx.db.user }, ctx.now(), ctx.config);
    if (!next.ok) throw next.error;
    try {
      const rev = await ctx.db.put(next.doc);
      return { ...next.doc, _rev: rev };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT') || attempt >= attempts) throw error;
      doc = await ctx.db.get<DaqDocument>(start._id);
    }
  }
}

/**
 * A ready step whose counted attempts already reach `max_attempts` (the limit lowered since):
 * no claim of it is legal, so it is recorded `<step> failed` for an operator's retry. True when
 * the step was spent (whether or not the write got through; it is logged when not).
 */
export async function failIfSpent(ctx: AgentContext, doc: DaqDocument, step: StepConfig): Promise<boolean> {
  if (countedAttempts(stepRecord(doc, step.name)) < step.max_attempts) return false;
  await apply(ctx, doc, { type: 'exhaust', step: step.name, by: actor(ctx) }).catch((error) => ctx.logger.warn({ doc: doc._id, step: step.name }, `attempts used up, not recorded: ${errorMessage(error)}`));
  return true;
}
