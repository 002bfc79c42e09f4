import type { StepConfig } from '../config/types.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import type { Hint } from '../core/nats.js';
import { registryStep } from '../core/registry-step.js';
import { sleep } from '../core/sleep.js';
import { readAssignment, stepsOwnedBy } from '../store/assignment.js';
import { Candidates } from './candidates.js';
import { ControlsView } from './controls.js';
import { decideClaim } from './claim-decision.js';
import { CustodyKeeper } from './custody.js';
import { type AgentContext, actor } from './context.js';
import { ChangesWatcher, expiredClaims, readyDocuments } from './discovery.js';
import { type AgentActivity, Heartbeat, type RunOutcome } from './heartbeat.js';
import { ensureEarlierRunsGone } from './run-identity.js';
import { RunSteps } from './run-steps.js';
import { type JobEnd, runClaimedStep, runFolder } from './step-job.js';
import { apply, claim, failIfSpent } from './writes.js';

export interface AgentOptions {
  concurrency: number;
  /** Process what is ready, then exit (sites that forbid long-lived processes). */
  once: boolean;
}

export type AgentState = 'created' | 'running' | 'stopping' | 'stopped';

export interface AgentCounters {
  claimed: number;
  lost_races: number;
  succeeded: number;
  failed: number;
  released: number;
  skipped: number;
  /** NATS: candidates another holder had reserved in the claim registry. */
  taken_elsewhere: number;
  /** Claims of an attempt after the first (a retry after a failure, or an expired claim taken over). */
  retries: number;
}

/**
 * The site agent: finds ready documents (ready views at start and every sweep, plus the changes
 * feed), claims them with a compare-and-set, runs up to `concurrency` steps at once.
 * `stop()` once drains (no new claims, running steps finish within the grace period, then
 * are released); `stop()` again forces.
 */
export class Agent {
  state: AgentState = 'created';
  readonly counters: AgentCounters = { claimed: 0, lost_races: 0, succeeded: 0, failed: 0, released: 0, skipped: 0, taken_elsewhere: 0, retries: 0 };
  private readonly candidates = new Candidates();
  /** Verifies the copies this site holds (custody steps), a pass per sweep. */
  readonly custody: CustodyKeeper;
  /** Claimed documents until their outcome is written; `processEnded`: the step's process is over, its slot free. */
  private readonly running = new Map<string, { step: string; done: Promise<unknown>; processEnded: boolean }>();
  /** Candidates being claimed right now: they hold a slot like running steps, and another copy of one (from the feed or a sweep) is not a candidate meanwhile. */
  private readonly claiming = new Set<string>();
  /** The last sweep returned a full page of ready documents: there are more. */
  private backlog = false;
  /** Documents written since the last sweep: a full page of which none could be claimed is not fetched again at once. */
  private writtenSinceSweep = 0;
  private readonly draining = new AbortController();
  private readonly forcing = new AbortController();
  private wakeUp: () => void = () => {};
  private finished: Promise<void> | undefined;
  private stopRequests = 0;

  /** The steps this agent runs: its site's, as the assignment says (from the config until one is read). */
  private owned: readonly StepConfig[];
  /** The operators' pauses and drains: what of `owned` may be claimed now. */
  private readonly controls: ControlsView;

  constructor(
    private readonly ctx: AgentContext,
    private readonly options: AgentOptions,
  ) {
    this.owned = ctx.steps;
    this.custody = new CustodyKeeper(ctx);
    this.controls = new ControlsView(ctx.db, ctx.site.name, ctx.logger);
  }

  /** The owned steps the operators have not paused, none when this site is drained. */
  private get claimable(): readonly StepConfig[] {
    return this.controls.claimable(this.owned);
  }

  /** Runs until stopped (or, with `once`, until nothing is left); resolves when everything is released. */
  run(): Promise<void> {
    this.finished ??= this.main();
    return this.finished;
  }

  /** Nothing claimed or running: stopping has nothing to finish or release. */
  get idle(): boolean {
    return this.running.size === 0 && this.claiming.size === 0;
  }

  stop(): Promise<void> {
    this.stopRequests++;
    if (this.stopRequests === 1) {
      this.ctx.logger.info('stopping: no new claims, waiting for running steps');
      this.state = 'stopping';
      this.draining.abort();
      setTimeout(() => this.forcing.abort(), this.ctx.config.agent.grace_s * 1000).unref();
    } else {
      this.ctx.logger.warn('forced stop: killing running steps and releasing their claims');
      this.forcing.abort();
    }
    this.wakeUp();
    return this.finished ?? Promise.resolve();
  }

  /** The counters the heartbeat publishes (and `/metrics` exports per agent). */
  activity(): AgentActivity {
    const c = this.counters;
    return { claims: c.claimed, claim_conflicts: c.lost_races + c.taken_elsewhere, retries: c.retries, steps_ok: c.succeeded, steps_failed: c.failed };
  }

  private async main(): Promise<void> {
    this.state = 'running';
    // Run-scope steps (archive a run): their own sweep over the run documents, one run at a time.
    const runs = new RunSteps(this.ctx, this.counters, (steps) => this.controls.claimable(steps));
    const heartbeat = new Heartbeat(
      this.ctx,
      () => [...[...this.running].map(([doc, { step }]) => ({ doc, step })), ...runs.runningNow()],
      () => this.activity(),
    );
    heartbeat.start();
    const background: Promise<unknown>[] = [];
    // NATS: a `ready` hint for one of our steps brings that document in at once.
    const hints = this.options.once ? undefined : this.ctx.channel?.subscribe(this.ctx.config.database, ['ready'], (_kind, hint) => this.onHint(hint));
    let outcome: RunOutcome = 'failed';
    try {
      if (this.options.once) await this.sweep();
      else {
        background.push(runs.loop(this.draining.signal, this.forcing.signal));
        // The feed also carries the operators' controls: a resume or an undrain brings the waiting documents in at once, not at the next sweep.
        const watcher = new ChangesWatcher(
          this.ctx,
          (docs) => this.offer(docs),
          (doc) => this.controls.learnFrom(doc) && void this.trySweep(),
        );
        background.push(watcher.follow(await watcher.startingPoint(), this.draining.signal));
        // A long-running agent outlives a bad first answer, and takes work from the feed while
        // a first sweep still waits for a failing server: the sweep loop and the feed try again.
        background.push(this.sweepLoop(), this.trySweep());
      }
      await this.dispatchLoop();
      // An --once run ends after the copies it found were verified.
      if (this.options.once) await this.custody.finish(this.draining.signal);
      if (this.options.once) await runs.sweep(this.draining.signal, this.forcing.signal);
      outcome = 'ok';
    } finally {
      this.state = 'stopping';
      this.draining.abort();
      while (this.claiming.size > 0) await sleep(10);
      await Promise.allSettled([...this.running.values()].map((r) => r.done));
      await Promise.allSettled(background);
      await this.custody.settled();
      await this.ctx.triggers?.stop();
      await heartbeat.stop('stopped', outcome);
      hints?.unsubscribe();
      this.state = 'stopped';
      this.ctx.logger.info({ ...this.counters }, 'agent stopped');
    }
  }

  /** Claims while slots and candidates last; sweeps again for a backlog; with `once`, returns when nothing is left. */
  private async dispatchLoop(): Promise<void> {
    while (!this.draining.signal.aborted) {
      // Claims go out together (the database coalesces them into one request), not one by one.
      while (this.busySlots() + this.claiming.size < this.options.concurrency && this.candidates.size > 0 && !this.draining.signal.aborted) {
        const doc = this.candidates.take() as DaqDocument;
        this.claiming.add(doc._id);
        void this.consider(doc)
          .catch((error) => this.ctx.logger.warn({ doc: doc._id }, `cannot claim: ${errorMessage(error)}`))
          .finally(() => {
            this.claiming.delete(doc._id);
            this.wakeUp();
          });
      }
      const empty = this.candidates.size === 0 && this.claiming.size === 0;
      if (this.backlog && empty && this.writtenSinceSweep > 0) {
        await this.trySweep();
        continue;
      }
      if (this.options.once && empty && this.running.size === 0) {
        if ((await this.sweep()) === 0 || this.candidates.size === 0) return;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
        if (this.draining.signal.aborted) resolve();
      });
    }
  }

  /** Steps whose process still runs: what `concurrency` limits (an outcome being written holds no slot). */
  private busySlots(): number {
    let busy = 0;
    for (const step of this.running.values()) if (!step.processEnded) busy++;
    return busy;
  }

  // ---- finding candidates ----

  private offer(docs: DaqDocument[]): void {
    this.ctx.triggers?.offer(docs, this.ctx.now());
    this.candidates.offer(docs, (id) => this.running.has(id) || this.claiming.has(id));
    if (docs.length > 0) this.wakeUp();
  }

  /** The ready and lapsed documents of our steps; returns how many the views gave. */
  private async sweep(): Promise<number> {
    const limit = Math.max(100, this.options.concurrency * 50);
    this.backlog = false;
    this.writtenSinceSweep = 0;
    await this.followAssignment();
    await this.controls.refresh(this.draining.signal);
    const ready = await readyDocuments(this.ctx, this.claimable, limit);
    // A full page means a backlog: the next page is fetched as soon as this one is used up.
    this.backlog = ready.length >= limit;
    const docs = [...ready, ...(await expiredClaims(this.ctx, this.claimable, limit))];
    this.offer(docs);
    void this.custody.pass(this.draining.signal);
    await this.ctx.triggers?.wakeForWork(this.ctx.db, this.ctx.now(), this.ctx.logger);
    return docs.length;
  }

  private trySweep(): Promise<unknown> {
    return this.sweep().catch((error) => this.ctx.logger.warn(`sweep: ${errorMessage(error)}`));
  }

  private async sweepLoop(): Promise<void> {
    const every = this.ctx.config.agent.sweep_s * 1000;
    while (await sleep(every * (0.8 + Math.random() * 0.4), this.draining.signal)) await this.trySweep();
  }

  /** Obeys the coordinator's assignment: the steps this site runs can move to another site. */
  private async followAssignment(): Promise<void> {
    const owned = stepsOwnedBy(this.ctx.site.name, await readAssignment(this.ctx.db), this.ctx.config);
    const names = (steps: readonly StepConfig[]) => steps.map((s) => s.name).join(',');
    if (names(owned) !== names(this.owned)) {
      this.ctx.logger.warn({ before: names(this.owned), now: names(owned) }, 'the assignment changed the steps this site runs');
      this.owned = owned;
    }
  }

  // ---- claiming and running ----

  private skip(doc: DaqDocument, reason: string): void {
    if (!this.candidates.skip(doc)) return;
    this.counters.skipped++;
    this.ctx.logger.warn({ doc: doc._id }, `skipped: ${reason}`);
  }

  /** Acts on the claim decision (claim-decision.ts); a claim won starts the step. */
  private async consider(doc: DaqDocument): Promise<void> {
    const decision = decideClaim(doc, this.claimable, this.ctx.config, this.ctx.now());
    switch (decision.kind) {
      case 'none':
        return;
      case 'skip':
        return this.skip(doc, decision.reason);
      case 'exhaust':
        if ((await failIfSpent(this.ctx, doc, decision.step)) === 'recorded') this.counters.failed++;
        this.writtenSinceSweep++;
        return;
      case 'expire':
        await apply(this.ctx, doc, { type: 'expire', step: decision.step.name, by: actor(this.ctx) }).catch(() => undefined);
        this.writtenSinceSweep++;
        return;
      case 'mark_bad':
        this.skip(doc, decision.reason);
        await apply(this.ctx, doc, { type: 'mark_bad', by: actor(this.ctx), reason: decision.reason }).catch(() => undefined);
        this.writtenSinceSweep++;
        return;
      case 'claim':
        return this.claimAndRun(doc, decision.step);
    }
  }

  private async claimAndRun(doc: DaqDocument, step: StepConfig): Promise<void> {
    // An earlier attempt's process on this host (its agent killed, its lease lapsed) must be gone
    // before another starts: checked before the claim, so a run that cannot be killed costs no write.
    const earlier = await ensureEarlierRunsGone(runFolder(this.ctx.site.log_dir, doc._id), doc, step.name);
    if (!earlier.gone) {
      // Not skipped for good: a process stuck in the kernel may die later; the next sweep looks again.
      this.ctx.logger.warn({ doc: doc._id, step: step.name }, `not claiming: ${earlier.reason}`);
      return;
    }
    if (earlier.killed > 0) this.ctx.logger.warn({ doc: doc._id, step: step.name }, `killed ${earlier.killed} process(es) of the earlier run before claiming`);
    // NATS: reserve (doc, step) in the cross-site registry first; 'unavailable' → CouchDB alone decides.
    const registered = registryStep(doc, step.name);
    const reservation = (await this.ctx.channel?.tryReserve(this.ctx.config.database, doc._id, registered, actor(this.ctx))) ?? 'unavailable';
    if (reservation === 'taken') {
      this.counters.taken_elsewhere++;
      return;
    }
    const leaseUntil = new Date(this.ctx.now().getTime() + step.lease_s * 1000).toISOString();
    const result = await claim(this.ctx, doc, {
      type: 'claim',
      step: step.name,
      mode: 'run',
      site: this.ctx.site.name,
      agent: this.ctx.name,
      host: this.ctx.host,
      lease_until: leaseUntil,
      version: step.version,
    }).catch(async (error) => {
      if (reservation === 'reserved') await this.settleReservation(doc._id, step.name, registered, undefined);
      throw error;
    });
    if (result.kind !== 'written') {
      // A lost race is counted; an illegal claim (the document changed under the decision) is logged once.
      if (result.kind === 'conflict') this.counters.lost_races++;
      else if (result.kind === 'illegal') this.skip(doc, result.error.message);
      if (reservation === 'reserved') await this.settleReservation(doc._id, step.name, registered, undefined);
      return;
    }
    const claimed = result.doc;
    this.writtenSinceSweep++;
    this.counters.claimed++;
    if ((stepRecord(claimed, step.name)?.attempts ?? 1) > 1) this.counters.retries++;
    this.candidates.remember(claimed);
    this.hint('claimed', doc._id, step.name);
    let end: JobEnd | undefined;
    let after: DaqDocument | undefined;
    const entry = { step: step.name, done: Promise.resolve() as Promise<unknown>, processEnded: false };
    this.running.set(doc._id, entry);
    const processEnded = () => {
      entry.processEnded = true;
      this.wakeUp();
    };
    entry.done = (this.ctx.runStep ?? runClaimedStep)(this.ctx, claimed, step.name, this.forcing.signal, processEnded)
      .then((job) => {
        ({ end, doc: after } = job);
        this.finishJob(job.end, job.doc);
      })
      .catch((error) => this.ctx.logger.error({ doc: doc._id, step: step.name }, `step bookkeeping failed: ${errorMessage(error)}`))
      .finally(() => {
        this.running.delete(doc._id);
        this.wakeUp();
        return this.settleReservation(doc._id, step.name, registered, end, after);
      });
  }

  private finishJob(end: JobEnd, after: DaqDocument): void {
    this.running.delete(after._id);
    this.candidates.remember(after);
    if (end === 'succeeded') this.counters.succeeded++;
    else if (end === 'failed') this.counters.failed++;
    else if (end === 'released') this.counters.released++;
    // A finished step often makes the next one ready here: chain it without waiting for a feed.
    if (end === 'succeeded' && !this.draining.signal.aborted) this.offer([after]);
  }

  // ---- NATS channel (optional): hints in and out, claim-registry bookkeeping ----

  /** A `ready` hint for one of our steps: fetch that document and offer it (milliseconds instead of a feed or sweep). */
  private onHint(hint: Hint): void {
    if (this.draining.signal.aborted || !this.ctx.steps.some((s) => s.name === hint.step)) return;
    if (this.running.has(hint.doc) || this.claiming.has(hint.doc) || this.candidates.has(hint.doc)) return;
    this.ctx.db
      .get<DaqDocument>(hint.doc)
      .then((doc) => {
        if (doc && !this.draining.signal.aborted) this.offer([doc]);
      })
      .catch((error) => this.ctx.logger.debug({ doc: hint.doc }, `hinted document not read: ${errorMessage(error)}`));
  }

  private hint(kind: 'ready' | 'claimed' | 'done', doc: string, step: string): void {
    this.ctx.channel?.publish(kind, { db: this.ctx.config.database, doc, step, site: this.ctx.site.name });
  }

  /** After the step: success → `done`, a `ready` hint for the next step, key kept as done; anything else → key released. */
  private async settleReservation(doc: string, step: string, registered: string, end: JobEnd | undefined, after?: DaqDocument): Promise<void> {
    const channel = this.ctx.channel;
    if (!channel) return;
    const db = this.ctx.config.database;
    if (end === 'succeeded') {
      this.hint('done', doc, step);
      const names = this.ctx.config.steps.map((s) => s.name);
      const next = names[names.indexOf(step) + 1];
      if (next && after?.status === 'good') this.hint('ready', doc, next);
      await channel.complete(db, doc, registered, actor(this.ctx));
    } else {
      await channel.release(db, doc, registered, actor(this.ctx));
    }
  }
}
