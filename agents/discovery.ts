import type { StepConfig } from '../config/types.js';
import type { DaqDocument } from '../core/document.js';
import { errorMessage, isMeshError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import type { AgentContext } from './context.js';

export const DESIGN = 'mesh';
const CHECKPOINT_EVERY_MS = 5000;

/** Documents of the given steps whose `[step, time]` key in `view` is due by now (no full scan). */
async function dueDocuments(ctx: AgentContext, view: 'ready' | 'in_flight', steps: readonly StepConfig[], limit: number): Promise<DaqDocument[]> {
  const now = ctx.now().toISOString();
  const docs: DaqDocument[] = [];
  for (const step of steps) {
    const { rows } = await ctx.db.view<unknown, DaqDocument>(DESIGN, view, { startkey: [step.name, ''], endkey: [step.name, now], include_docs: true, reduce: false, limit });
    // A row without a document object (a proxy's or another API's answer) is not work.
    for (const row of rows) if (row.doc && typeof row.doc === 'object' && typeof (row.doc as { _id?: unknown })._id === 'string') docs.push(row.doc);
  }
  return docs;
}

/** Documents ready now for one of the agent's steps (`ready` is keyed by retry time). */
export function readyDocuments(ctx: AgentContext, steps: readonly StepConfig[], limit: number): Promise<DaqDocument[]> {
  return dueDocuments(ctx, 'ready', steps, limit);
}

/** Claimed documents of the agent's steps whose lease has run out (`in_flight` is keyed by lease end). */
export function expiredClaims(ctx: AgentContext, steps: readonly StepConfig[], limit: number): Promise<DaqDocument[]> {
  return dueDocuments(ctx, 'in_flight', steps, limit);
}

interface Checkpoint {
  since: string | number;
  updated: string;
}

/**
 * Follows `_changes` by longpoll with a Mango selector, from a checkpoint kept in a `_local`
 * document so a restart resumes where it stopped. A first start begins at the update sequence
 * read before the first sweep, so nothing between the two is missed.
 */
export class ChangesWatcher {
  private readonly checkpointId: string;

  constructor(private readonly ctx: AgentContext, private readonly onDocs: (docs: DaqDocument[]) => void) {
    this.checkpointId = `mesh-changes-${ctx.site.name}-${ctx.name}`;
  }

  /** Where the feed starts: the checkpoint, or the current update sequence on a first start. */
  async startingPoint(): Promise<string | number> {
    const saved = await this.ctx.db.getLocal<Checkpoint>(this.checkpointId);
    if (saved) return saved.since;
    return (await this.ctx.db.info()).update_seq;
  }

  async follow(since: string | number, signal: AbortSignal): Promise<void> {
    const selector = { type: this.ctx.config.doc_type, status: { $in: ['closed', 'good'] } };
    let rev: string | undefined = (await this.ctx.db.getLocal<Checkpoint>(this.checkpointId))?._rev;
    let failures = 0;
    let saved = since;
    let savedAt = 0;
    while (!signal.aborted) {
      try {
        const batch = await this.ctx.db.changes<DaqDocument>(since, selector, { timeoutMs: 25_000, includeDocs: true, limit: 500, signal });
        failures = 0;
        const docs = batch.results.flatMap((r) => (r.doc && !r.deleted ? [r.doc] : []));
        if (docs.length > 0) this.onDocs(docs);
        since = batch.last_seq;
        // A restart replays at most a few seconds of changes (claims are compare-and-set, so a
        // replay is harmless); saving on every batch would double the writes under load.
        if (since !== saved && Date.now() - savedAt >= CHECKPOINT_EVERY_MS) {
          saved = since;
          savedAt = Date.now();
          rev = await this.ctx.db.putLocal(this.checkpointId, { _rev: rev, since, updated: this.ctx.now().toISOString() }).catch(async (error) => {
            if (!isMeshError(error, 'CONFLICT')) throw error;
            return (await this.ctx.db.getLocal<Checkpoint>(this.checkpointId))?._rev;
          });
        }
      } catch (error) {
        if (signal.aborted) return;
        failures++;
        this.ctx.logger.warn({ failures }, `changes feed: ${errorMessage(error)}`);
        await sleep(Math.min(10_000, 250 * 2 ** failures), signal);
      }
    }
  }
}
