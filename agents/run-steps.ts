/**
 * The agent's run steps (config/run-steps.ts): on every sweep, the closed run documents with a
 * run step to do (store/runs.ts), one at a time. A run is claimed only when the state machine
 * says its step is ready (or its claim lapsed) and every member document, read through the
 * store, has done the step's `after`; the claim is the same compare-and-set on `_rev` as a
 * file's, so of two agents racing on one run exactly one runs it. A member appended between
 * the read and the claim changes `_rev`: the claim loses, and the next sweep looks again.
 */
import type { StepConfig } from '../config/types.js';
import { parseStatus, stepRecord } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { type RunDocument, asStateDocument, membersNotDone, runReadyFor } from '../core/run-document.js';
import { countedAttempts, leaseExpired } from '../core/state.js';
import { sleep } from '../core/sleep.js';
import { readAssignment, stepsOwnedBy } from '../store/assignment.js';
import { documentsById, runsToDo } from '../store/runs.js';
import { type AgentContext, actor } from './context.js';
import { runRunStep } from './run-step-job.js';
import { apply, claim, failIfSpent } from './writes.js';

export interface RunCounters {
  claimed: number;
  lost_races: number;
  succeeded: number;
  failed: number;
  retries: number;
}

/** The agent context with the run steps as its pipeline: writes.ts and lease.ts then apply the state machine to run documents. */
export function runContext(ctx: AgentContext): AgentContext {
  return { ...ctx, config: { ...ctx.config, steps: ctx.config.run_steps ?? [] }, steps: [] };
}

export class RunSteps {
  private readonly ctx: AgentContext;
  /** The run step running now, for the heartbeat's `running`. */
  private current: { doc: string; step: string } | undefined;

  constructor(
    fileCtx: AgentContext,
    private readonly counters: RunCounters,
    /** The operators' pauses and drains (agents/controls.ts): the steps of these that may be claimed now. */
    private readonly claimable: (steps: readonly StepConfig[]) => readonly StepConfig[] = (steps) => steps,
  ) {
    this.ctx = runContext(fileCtx);
  }

  runningNow(): Array<{ doc: string; step: string }> {
    return this.current ? [this.current] : [];
  }

  get configured(): boolean {
    return this.ctx.config.steps.length > 0;
  }

  /** Sweeps until `draining` aborts; `forcing` kills a running step and releases its claim. */
  async loop(draining: AbortSignal, forcing: AbortSignal): Promise<void> {
    if (!this.configured) return;
    const every = this.ctx.config.agent.sweep_s * 1000;
    do await this.sweep(draining, forcing).catch((error) => this.ctx.logger.warn(`run steps sweep: ${errorMessage(error)}`));
    while (await sleep(every * (0.8 + Math.random() * 0.4), draining));
  }

  /** One pass over the runs to do; returns how many run steps it ran. */
  async sweep(draining: AbortSignal, forcing: AbortSignal): Promise<number> {
    if (!this.configured) return 0;
    const owned = this.claimable(stepsOwnedBy(this.ctx.site.name, await readAssignment(this.ctx.db), this.ctx.config));
    if (owned.length === 0) return 0;
    let ran = 0;
    for (const doc of await runsToDo(this.ctx.db, 100)) {
      if (draining.aborted) break;
      if (await this.consider(doc, owned, forcing)) ran++;
    }
    return ran;
  }

  /** Claims and runs the run's step when it is ours and ready; true when it ran. */
  private async consider(doc: RunDocument, owned: readonly StepConfig[], forcing: AbortSignal): Promise<boolean> {
    const now = this.ctx.now();
    const names = this.ctx.config.steps.map((s) => s.name);
    const state = asStateDocument(doc);
    const current = parseStatus(doc.status, names);
    const claimedStep = current && (current.kind === 'in_progress' || current.kind === 'queued') ? current.step : undefined;
    const lapsed = claimedStep !== undefined && leaseExpired(stepRecord(state, claimedStep), now);
    const step = owned.find((s) => s.name === (lapsed ? claimedStep : runReadyFor(doc, this.ctx.config, now)));
    if (!step) return false;
    const record = stepRecord(state, step.name);
    if (lapsed && (record?.attempts ?? 0) >= step.max_attempts) {
      await apply(this.ctx, state, { type: 'expire', step: step.name, by: actor(this.ctx) }).catch(() => undefined);
      return false;
    }
    if (!lapsed && countedAttempts(record) >= step.max_attempts) {
      if ((await failIfSpent(this.ctx, state, step)) === 'recorded') this.counters.failed++;
      return false;
    }
    const waiting = membersNotDone(
      doc.members,
      await documentsById(
        this.ctx.db,
        doc.members.map((m) => m.doc_id),
      ),
      step.after ?? '',
    );
    if (waiting.length > 0) {
      this.ctx.logger.debug({ doc: doc._id, step: step.name, waiting: waiting.length }, `waiting for ${waiting.length} member(s) to finish ${step.after}`);
      return false;
    }
    const result = await claim(this.ctx, state, {
      type: 'claim',
      step: step.name,
      mode: 'run',
      site: this.ctx.site.name,
      agent: this.ctx.name,
      host: this.ctx.host,
      lease_until: new Date(now.getTime() + step.lease_s * 1000).toISOString(),
    });
    if (result.kind !== 'written') {
      if (result.kind === 'conflict') this.counters.lost_races++;
      else if (result.kind === 'illegal') this.ctx.logger.warn({ doc: doc._id, step: step.name }, `not claimed: ${result.error.message}`);
      return false;
    }
    this.counters.claimed++;
    if ((stepRecord(result.doc, step.name)?.attempts ?? 1) > 1) this.counters.retries++;
    this.current = { doc: doc._id, step: step.name };
    const job = await runRunStep(this.ctx, result.doc as unknown as RunDocument, step, forcing)
      .catch((error) => {
        this.ctx.logger.error({ doc: doc._id, step: step.name }, `run step bookkeeping failed: ${errorMessage(error)}`);
        return undefined;
      })
      .finally(() => (this.current = undefined));
    if (job?.end === 'succeeded') this.counters.succeeded++;
    else if (job?.end === 'failed') this.counters.failed++;
    return true;
  }
}
