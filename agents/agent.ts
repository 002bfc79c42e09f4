import type { StepConfig } from '../config/types.js';
import { readAssignment, stepsOwnedBy } from '../coordinator/assignment.js';
import { type DaqDocument, parseStatus, stepRecord } from '../core/document.js';
import { handlingProblems } from '../core/invariants.js';
import { errorMessage } from '../core/errors.js';
import type { Hint } from '../core/nats.js';
import { sleep } from '../core/sleep.js';
import { leaseExpired, readyFor } from '../core/state.js';
import { type AgentContext, actor } from './context.js';
import { templateVars } from './command.js';
import { isConfigurationFault } from './config-fault.js';
import { ChangesWatcher, DESIGN, expiredClaims, readyDocuments } from './discovery.js';
import { type AgentActivity, Heartbeat } from './heartbeat.js';
import { ensureRunGone } from './run-identity.js';
import { type JobEnd, runClaimedStep } from './step-job.js';
import { apply, claim, failIfSpent } from './writes.js';

/** How often a remote site holding claims in flight is woken to check on them (lost jobs, lapsed leases). */
export const REMOTE_CLAIMS_CHECK_MS = 30_000;

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
  private readonly candidates = new Map<string, DaqDocument>();
  private readonly running = new Map<string, { step: string; done: Promise<unknown> }>();
  private readonly skippedRevs = new Map<string, string>();
  /** The newest revision this agent wrote per document: older copies from the feed or a sweep are stale. */
  private readonly written = new Map<string, number>();
  /** Candidates being claimed right now; they hold a slot like running steps. */
  private claiming = 0;
  /** The last sweep returned a full page of ready documents: there are more. */
  private backlog = false;
  private readonly draining = new AbortController();
  private readonly forcing = new AbortController();
  private wakeUp: () => void = () => {};
  private finished: Promise<void> | undefined;
  private stopRequests = 0;
  /** When each remote site was last woken only to check on its claims in flight. */
  private readonly remoteClaimChecks = new Map<string, number>();

  /** The steps this agent runs: its site's, as the assignment says (from the config until one is read). */
  private owned: readonly StepConfig[];

  constructor(private readonly ctx: AgentContext, private readonly options: AgentOptions) {
    this.owned = ctx.steps;
  }

  /** Runs until stopped (or, with `once`, until nothing is left); resolves when everything is released. */
  run(): Promise<void> {
    this.finished ??= this.main();
    return this.finished;
  }

  /** Nothing claimed or running: stopping has nothing to finish or release. */
  get idle(): boolean {
    return this.running.size === 0 && this.claiming === 0;
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

  private offer(docs: DaqDocument[]): void {
    this.ctx.triggers?.offer(docs, this.ctx.now());
    for (const doc of docs) {
      if (this.running.has(doc._id) || revNumber(doc) < (this.written.get(doc._id) ?? 0)) continue;
      const known = this.candidates.get(doc._id);
      if (!known || revNumber(doc) >= revNumber(known)) this.candidates.set(doc._id, doc);
    }
    if (docs.length > 0) this.wakeUp();
  }

  private async sweep(): Promise<number> {
    const limit = Math.max(100, this.options.concurrency * 50);
    this.backlog = false;
    await this.followAssignment();
    const ready = await readyDocuments(this.ctx, this.owned, limit);
    // A full page means a backlog: the next page is fetched as soon as this one is used up.
    this.backlog = ready.length >= limit;
    const docs = [...ready, ...(await expiredClaims(this.ctx, this.owned, limit))];
    this.offer(docs.filter((d) => this.skippedRevs.get(d._id) !== d._rev));
    await this.pokeRemoteSites();
    return docs.length;
  }

  /** Obeys the coordinator's assignment: the steps this site runs can move to another site. */
  private async followAssignment(): Promise<void> {
    const assignment = await readAssignment(this.ctx.db);
    const owned = stepsOwnedBy(this.ctx.site.name, assignment, this.ctx.config);
    const names = (steps: readonly StepConfig[]) => steps.map((s) => s.name).join(',');
    if (names(owned) !== names(this.owned)) {
      this.ctx.logger.warn({ before: names(this.owned), now: names(owned) }, 'the assignment changed the steps this site runs');
      this.owned = owned;
    }
  }

  /**
   * Work waiting for a site that cannot watch the database itself: wake it (debounced by the
   * trigger). Also, at most every REMOTE_CLAIMS_CHECK_MS, while that site holds claims in flight:
   * its `--once` pass is what finds a cancelled or crashed batch job or a lapsed lease, and a site
   * woken only for ready work would never look at them again once nothing new arrives.
   */
  private async pokeRemoteSites(): Promise<void> {
    for (const [site, trigger] of this.ctx.triggers?.triggers ?? []) {
      const steps = this.ctx.config.steps.filter((s) => s.site === site);
      if (await this.anyRow('ready', steps, this.ctx.now().toISOString())) {
        trigger.poke();
        continue;
      }
      const now = Date.now();
      if (now - (this.remoteClaimChecks.get(site) ?? 0) < REMOTE_CLAIMS_CHECK_MS) continue;
      if (await this.anyRow('in_flight', steps, {})) {
        this.remoteClaimChecks.set(site, now);
        this.ctx.logger.debug({ site }, 'waking a site to check on its claims in flight');
        trigger.poke();
      }
    }
  }

  /** Whether `view` has a row for one of `steps` with a second key part up to `until`. */
  private async anyRow(view: 'ready' | 'in_flight', steps: readonly StepConfig[], until: string | object): Promise<boolean> {
    for (const step of steps) {
      const { rows } = await this.ctx.db.view(DESIGN, view, { startkey: [step.name], endkey: [step.name, until], reduce: false, limit: 1 });
      if (rows.length > 0) return true;
    }
    return false;
  }

  private async main(): Promise<void> {
    this.state = 'running';
    const heartbeat = new Heartbeat(
      this.ctx,
      () => [...this.running].map(([doc, { step }]) => ({ doc, step })),
      () => this.activity(),
    );
    heartbeat.start();
    const background: Promise<unknown>[] = [];
    // NATS: a `ready` hint for one of our steps brings that document in at once.
    const hints = this.options.once ? undefined : this.ctx.channel?.subscribe(this.ctx.config.database, ['ready'], (_kind, hint) => this.onHint(hint));
    try {
      if (!this.options.once) {
        const watcher = new ChangesWatcher(this.ctx, (docs) => this.offer(docs));
        const since = await watcher.startingPoint();
        background.push(watcher.follow(since, this.draining.signal));
        background.push(this.sweepLoop());
      }
      // A long-running agent outlives a bad first answer, and takes work from the feed while
      // a first sweep still waits for a failing server: the sweep loop and the feed try again.
      if (this.options.once) await this.sweep();
      else background.push(this.sweep().catch((error) => this.ctx.logger.warn(`sweep: ${errorMessage(error)}`)));
      await this.dispatchLoop();
    } finally {
      this.state = 'stopping';
      this.draining.abort();
      while (this.claiming > 0) await sleep(10);
      await Promise.allSettled([...this.running.values()].map((r) => r.done));
      await Promise.allSettled(background);
      await this.ctx.triggers?.stop();
      await heartbeat.stop();
      hints?.unsubscribe();
      this.state = 'stopped';
      this.ctx.logger.info({ ...this.counters }, 'agent stopped');
    }
  }

  private async sweepLoop(): Promise<void> {
    const every = this.ctx.config.agent.sweep_s * 1000;
    while (await sleep(every * (0.8 + Math.random() * 0.4), this.draining.signal)) {
      await this.sweep().catch((error) => this.ctx.logger.warn(`sweep: ${errorMessage(error)}`));
    }
  }

  private async dispatchLoop(): Promise<void> {
    while (!this.draining.signal.aborted) {
      // Claims go out together (the database coalesces them into one request), not one by one.
      while (this.running.size + this.claiming < this.options.concurrency && this.candidates.size > 0 && !this.draining.signal.aborted) {
        const doc = this.takeCandidate();
        this.claiming++;
        void this.consider(doc)
          .catch((error) => this.ctx.logger.warn({ doc: doc._id }, `cannot claim: ${errorMessage(error)}`))
          .finally(() => {
            this.claiming--;
            this.wakeUp();
          });
      }
      if (this.backlog && this.candidates.size === 0 && this.claiming === 0) {
        await this.sweep().catch((error) => this.ctx.logger.warn(`sweep: ${errorMessage(error)}`));
        continue;
      }
      if (this.options.once && this.running.size === 0 && this.claiming === 0 && this.candidates.size === 0) {
        if ((await this.sweep()) === 0 || this.candidates.size === 0) return;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
        if (this.draining.signal.aborted) resolve();
      });
    }
  }

  /** A random candidate: agents racing on the same view rows then rarely pick the same one. */
  private takeCandidate(): DaqDocument {
    const keys = [...this.candidates.keys()];
    const id = keys[Math.floor(Math.random() * Math.min(keys.length, 64))];
    const doc = this.candidates.get(id) as DaqDocument;
    this.candidates.delete(id);
    return doc;
  }

  private skip(doc: DaqDocument, reason: string): void {
    if (this.skippedRevs.get(doc._id) === doc._rev) return;
    this.skippedRevs.set(doc._id, doc._rev ?? '');
    this.counters.skipped++;
    this.ctx.logger.warn({ doc: doc._id }, `skipped: ${reason}`);
  }

  /** Claims the document if one of our steps is ready on it (or its claim expired), then runs it. */
  private async consider(doc: DaqDocument): Promise<void> {
    const stepNames = this.ctx.config.steps.map((s) => s.name);
    const problems = handlingProblems(doc, stepNames);
    if (problems.length > 0) return this.skip(doc, problems.join('; '));
    const now = this.ctx.now();
    const owned = (name: string | undefined) => this.owned.find((s) => s.name === name);
    const current = parseStatus(doc.status, stepNames);
    let step = owned(readyFor(doc, this.ctx.config, now));
    let reclaim = false;
    if (!step && current && (current.kind === 'in_progress' || current.kind === 'queued') && owned(current.step) && leaseExpired(stepRecord(doc, current.step as string), now)) {
      step = owned(current.step);
      reclaim = true;
    }
    if (!step) return;
    if (!reclaim && (await failIfSpent(this.ctx, doc, step))) {
      this.counters.failed++;
      return;
    }
    const attempts = stepRecord(doc, step.name)?.attempts ?? 0;
    if (reclaim && attempts >= step.max_attempts) {
      await apply(this.ctx, doc, { type: 'expire', step: step.name, by: actor(this.ctx) }).catch(() => undefined);
      return;
    }
    try {
      templateVars(doc, step, this.ctx.config.steps[stepNames.indexOf(step.name) - 1]);
    } catch (error) {
      // Only the document's own fault marks it bad (terminal); a configuration fault is claimed
      // like any step, which then records it as `<step> failed` (see config-fault.ts).
      if (!isConfigurationFault(error)) {
        const reason = `refused: ${errorMessage(error)}`;
        this.skip(doc, reason);
        await apply(this.ctx, doc, { type: 'mark_bad', by: actor(this.ctx), reason }).catch(() => undefined);
        return;
      }
    }
    // An earlier attempt's process on this host (its agent killed, its lease lapsed) must be gone before another starts.
    const earlier = await ensureRunGone(stepRecord(doc, step.name)?.run);
    if (!earlier.gone) {
      // Not skipped for good: a process stuck in the kernel may die later; the next sweep looks again.
      this.ctx.logger.warn({ doc: doc._id, step: step.name }, `not claiming: ${earlier.reason}`);
      return;
    }
    if (earlier.killed > 0) this.ctx.logger.warn({ doc: doc._id, step: step.name }, `killed ${earlier.killed} process(es) of the earlier run before claiming`);
    const leaseUntil = new Date(now.getTime() + step.lease_s * 1000).toISOString();
    // NATS: reserve (doc, step) in the cross-site registry first; 'unavailable' → CouchDB alone decides.
    const reservation = (await this.ctx.channel?.tryReserve(this.ctx.config.database, doc._id, step.name, actor(this.ctx))) ?? 'unavailable';
    if (reservation === 'taken') {
      this.counters.taken_elsewhere++;
      return;
    }
    const claimed = await claim(this.ctx, doc, { type: 'claim', step: step.name, mode: 'run', site: this.ctx.site.name, agent: this.ctx.name, host: this.ctx.host, lease_until: leaseUntil }).catch(async (error) => {
      if (reservation === 'reserved') await this.settleReservation(doc._id, step.name, undefined);
      throw error;
    });
    if (!claimed) {
      this.counters.lost_races++;
      if (reservation === 'reserved') await this.settleReservation(doc._id, step.name, undefined);
      return;
    }
    this.counters.claimed++;
    if ((stepRecord(claimed, step.name)?.attempts ?? 1) > 1) this.counters.retries++;
    this.remember(claimed);
    this.hint('claimed', doc._id, step.name);
    let end: JobEnd | undefined;
    let after: DaqDocument | undefined;
    const done = runClaimedStep(this.ctx, claimed, step.name, this.forcing.signal)
      .then((job) => {
        ({ end, doc: after } = job);
        this.finishJob(job.end, job.doc);
      })
      .catch((error) => this.ctx.logger.error({ doc: doc._id, step: step?.name }, `step bookkeeping failed: ${errorMessage(error)}`))
      .finally(() => {
        this.running.delete(doc._id);
        this.wakeUp();
        return this.settleReservation(doc._id, step.name, end, after);
      });
    this.running.set(doc._id, { step: step.name, done });
  }

  // ---- NATS channel (optional): hints in and out, claim-registry bookkeeping ----

  /** A `ready` hint for one of our steps: fetch that document and offer it (milliseconds instead of a feed or sweep). */
  private onHint(hint: Hint): void {
    if (this.draining.signal.aborted || !this.ctx.steps.some((s) => s.name === hint.step)) return;
    if (this.running.has(hint.doc) || this.candidates.has(hint.doc)) return;
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
  private async settleReservation(doc: string, step: string, end: JobEnd | undefined, after?: DaqDocument): Promise<void> {
    const channel = this.ctx.channel;
    if (!channel) return;
    const db = this.ctx.config.database;
    if (end === 'succeeded') {
      this.hint('done', doc, step);
      const names = this.ctx.config.steps.map((s) => s.name);
      const next = names[names.indexOf(step) + 1];
      if (next && after?.status === 'good') this.hint('ready', doc, next);
      await channel.complete(db, doc, step, actor(this.ctx));
    } else {
      await channel.release(db, doc, step, actor(this.ctx));
    }
  }

  private remember(doc: DaqDocument): void {
    if (this.written.size > 50_000) this.written.clear();
    this.written.set(doc._id, revNumber(doc));
  }

  private finishJob(end: JobEnd, after: DaqDocument): void {
    this.running.delete(after._id);
    this.remember(after);
    if (end === 'succeeded') this.counters.succeeded++;
    else if (end === 'failed') this.counters.failed++;
    else if (end === 'released') this.counters.released++;
    // A finished step often makes the next one ready here: chain it without waiting for a feed.
    if (end === 'succeeded' && !this.draining.signal.aborted) this.offer([after]);
  }
}

function revNumber(doc: DaqDocument): number {
  return Number.parseInt(doc._rev ?? '0', 10);
}
