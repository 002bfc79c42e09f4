import type { StepConfig } from '../config/types.js';
import type { DaqDocument } from '../core/document.js';
import { followChanges } from '../store/changes.js';
import { FeedCheckpoint } from '../store/checkpoints.js';
import * as files from '../store/files.js';
import type { AgentContext } from './context.js';
import { CONTROLS_ID } from '../core/operator-controls.js';

/** Documents ready now for one of the agent's steps, up to `limit` per step. */
export async function readyDocuments(ctx: AgentContext, steps: readonly StepConfig[], limit: number): Promise<DaqDocument[]> {
  const until = ctx.now().toISOString();
  return (await Promise.all(steps.map((step) => files.ready(ctx.db, step.name, { until, limit })))).flat();
}

/** Claimed documents of the agent's steps whose lease has run out. */
export async function expiredClaims(ctx: AgentContext, steps: readonly StepConfig[], limit: number): Promise<DaqDocument[]> {
  const until = ctx.now().toISOString();
  return (await Promise.all(steps.map((step) => files.expiredClaims(ctx.db, step.name, { until, limit })))).flat();
}

/**
 * The documents that may have become ready, from `_changes`, resumed from a checkpoint so a
 * restart goes on where it stopped. A first start begins at the update sequence read before
 * the first sweep, so nothing between the two is missed.
 */
export class ChangesWatcher {
  private readonly checkpoint: FeedCheckpoint;

  constructor(
    private readonly ctx: AgentContext,
    private readonly onDocs: (docs: DaqDocument[]) => void,
    /** The operators' controls document, when it changed (the same feed carries it: no second connection). */
    private readonly onControls?: (doc: unknown) => void,
  ) {
    this.checkpoint = new FeedCheckpoint(ctx.db, `mesh-changes-${ctx.site.name}-${ctx.name}`);
  }

  /** Where the feed starts: the checkpoint, or the current update sequence on a first start. */
  async startingPoint(): Promise<string | number> {
    return (await this.checkpoint.read()) ?? (await this.ctx.db.info()).update_seq;
  }

  follow(since: string | number, signal: AbortSignal): Promise<void> {
    const work = { type: this.ctx.config.doc_type, status: { $in: ['closed', 'good'] } };
    const selector = this.onControls ? { $or: [work, { _id: CONTROLS_ID }] } : work;
    // Claims are compare-and-set, so replaying a few seconds of changes after a restart is harmless.
    return followChanges<DaqDocument>(this.ctx.db, {
      selector,
      since,
      includeDocs: true,
      afterFailure: 'resume',
      onChanges: (docs) => {
        const controls = docs.filter((d) => d._id === CONTROLS_ID);
        for (const doc of controls) this.onControls?.(doc);
        const work = controls.length > 0 ? docs.filter((d) => d._id !== CONTROLS_ID) : docs;
        if (work.length > 0) this.onDocs(work);
      },
      checkpoint: this.checkpoint,
      logger: this.ctx.logger,
      what: this.ctx.config.database,
      signal,
    });
  }
}
