import { readAssignment, stepsOwnedBy } from '../../store/assignment.js';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { credentialPrefix, credentialsFor, passwordFileFor } from '../../config/credentials.js';
import { documentsPerJob, walltimeInOptions, walltimeOptions } from '../../config/batch-walltime.js';
import type { BatchConfig, StepConfig } from '../../config/types.js';
import { type BatchJob, type DaqDocument, stepRecord } from '../../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';
import { readyFor } from '../../core/state.js';
import { decideClaim } from '../claim-decision.js';
import { ControlsView } from '../controls.js';
import { type AgentContext, actor } from '../context.js';
import { readyDocuments } from '../discovery.js';
import { ensureRunGone } from '../run-identity.js';
import { apply, claim, failIfSpent } from '../writes.js';
import { type BatchJobFile, writeJobFile, writeJobScript } from './job-file.js';
import { CustodyKeeper } from '../custody.js';
import { sweepLostJobs } from './lost-jobs.js';
import type { BatchSystem } from './types.js';

/**
 * The lease of a queued document. While a job waits in the queue nobody renews its claim, and
 * the scheduler (asked on every pass, see lost-jobs.ts) is the authority on whether it still
 * exists; the lease is only the backstop for when no pass runs any more. It is long enough
 * that a job merely waiting in a busy queue is never reclaimed by a lease sweeper; once the
 * job starts the document, the lease becomes the step's `lease_s` and is renewed as usual.
 */
export const QUEUED_LEASE_MS = 7 * 24 * 3600 * 1000;

export interface SubmitterCounters {
  jobs: number;
  /** Ready documents left for a later pass because `batch.max_jobs` jobs were queued or running. */
  held_back: number;
  claimed: number;
  lost_races: number;
  released: number;
  refused: number;
  lost: number;
  expired: number;
}

/**
 * `mesh agent --once` at a batch site: sweep lost jobs, then claim the ready documents of the
 * site's steps with `mode: 'queue'`, up to `docs_per_job` per job, and submit one batch job per
 * group. Nothing of this process outlives the pass; the jobs run `mesh run-batch JOBFILE`.
 */
export class BatchSubmitter {
  readonly counters: SubmitterCounters = { jobs: 0, held_back: 0, claimed: 0, lost_races: 0, released: 0, refused: 0, lost: 0, expired: 0 };
  /** The copies this site holds are verified here too (agents/custody.ts): a batch site's runs are its only processes. */
  private readonly custody: CustodyKeeper;
  private readonly controls: ControlsView;

  constructor(
    private readonly ctx: AgentContext,
    private readonly batch: BatchSystem,
    private readonly config: BatchConfig,
  ) {
    this.custody = new CustodyKeeper(ctx);
    this.controls = new ControlsView(ctx.db, ctx.site.name, ctx.logger);
  }

  /** One pass, or passes every `sweep_s` until `signal` aborts. */
  async run(options: { once: boolean; signal: AbortSignal }): Promise<void> {
    do {
      await this.pass();
      await this.custody.pass(options.signal);
      this.ctx.logger.info({ ...this.counters }, 'batch pass done');
    } while (!options.once && (await sleep(this.ctx.config.agent.sweep_s * 1000, options.signal)));
  }

  async pass(): Promise<SubmitterCounters> {
    const swept = await sweepLostJobs(this.ctx, this.batch);
    this.counters.lost += swept.lost;
    this.counters.expired += swept.expired;
    this.requireJobCredentials();
    let free = this.config.max_jobs === undefined ? Infinity : Math.max(0, this.config.max_jobs - swept.active.size);
    const limit = Math.min(5000, this.config.docs_per_job * 50);
    // The coordinator's assignment decides which steps this site runs now, the operators' pauses and drains what of them it may claim.
    await this.controls.refresh();
    const steps = this.controls.claimable(stepsOwnedBy(this.ctx.site.name, await readAssignment(this.ctx.db), this.ctx.config));
    const ready = await readyDocuments(this.ctx, steps, limit);
    let heldBack = 0;
    for (const step of steps) {
      const docs = ready.filter((doc) => readyFor(doc, this.ctx.config, this.ctx.now()) === step.name);
      if (docs.length === 0) continue;
      const perJob = this.documentsPerJob(step);
      const accepted: DaqDocument[] = [];
      // Vetted only as far as the free job slots reach: the rest stays ready, untouched.
      for (const doc of docs) {
        if (accepted.length >= perJob * free) {
          heldBack++;
          continue;
        }
        if (await this.acceptable(doc, step)) accepted.push(doc);
      }
      for (let i = 0; i < accepted.length; i += perJob) {
        if ((await this.submitJob(step, accepted.slice(i, i + perJob))) > 0) free--;
      }
    }
    this.counters.held_back += heldBack;
    if (heldBack > 0)
      this.ctx.logger.info(
        { max_jobs: this.config.max_jobs, active: swept.active.size },
        `${heldBack} ready document(s) wait: ${this.config.max_jobs} jobs (batch.max_jobs) are queued or running`,
      );
    return this.counters;
  }

  /** `docs_per_job`, lowered (and said so) so that each document's step fits the walltime whole. */
  private documentsPerJob(step: StepConfig): number {
    const { count, lowered } = documentsPerJob(this.config.docs_per_job, this.config.walltime_s, step.timeout_s);
    if (lowered)
      this.ctx.logger.info(
        { step: step.name, docs_per_job: this.config.docs_per_job, walltime_s: this.config.walltime_s, timeout_s: step.timeout_s },
        `${step.name} jobs hold ${count} document(s), not docs_per_job ${this.config.docs_per_job}: a walltime of ${this.config.walltime_s} s fits ${count} step(s) of timeout_s ${step.timeout_s}`,
      );
    return count;
  }

  /** A job that does not inherit the environment can log in only with a password file: refuse to submit jobs that could not. */
  private requireJobCredentials(): void {
    const site = this.ctx.site.credentials_of;
    if (this.batch.jobInheritsEnvironment !== false || passwordFileFor(site) || !credentialsFor(site)) return;
    const prefix = credentialPrefix(site);
    throw new MeshError(
      'CREDENTIALS_MISSING',
      `${this.batch.name} jobs do not get the submitter's environment, so ${prefix}_PASSWORD cannot reach them: put the password in a 0600 file and set ${prefix}_PASSWORD_FILE (and unset ${prefix}_PASSWORD)`,
    );
  }

  /**
   * Whether `doc` goes into a job for `step`, decided as the agent decides a claim
   * (claim-decision.ts): malformed documents are skipped, spent ones failed, those whose names
   * the step refuses marked bad; configuration faults are left to the job's run-step.
   */
  private async acceptable(doc: DaqDocument, step: StepConfig): Promise<boolean> {
    const decision = decideClaim(doc, [step], this.ctx.config, this.ctx.now());
    switch (decision.kind) {
      case 'skip':
        this.ctx.logger.warn({ doc: doc._id }, `skipped: ${decision.reason}`);
        return false;
      case 'exhaust':
        await failIfSpent(this.ctx, doc, step);
        return false;
      case 'mark_bad':
        this.counters.refused++;
        await apply(this.ctx, doc, { type: 'mark_bad', by: actor(this.ctx), reason: decision.reason }).catch(() => undefined);
        return false;
      case 'claim': {
        if (decision.reclaim) return false;
        // A batch job that ran on this host (one-machine topologies) must be gone before the step is queued again.
        const earlier = await ensureRunGone(stepRecord(doc, step.name)?.run);
        if (!earlier.gone) this.ctx.logger.warn({ doc: doc._id, step: step.name }, `not queued: ${earlier.reason}`);
        return earlier.gone;
      }
      default:
        return false;
    }
  }

  /** Claim first (the job id is not known yet), submit, then record the id; a refused submission releases the claims. */
  /** Claims and submits one job; resolves with the number of documents it holds (0: none could be claimed). */
  private async submitJob(step: StepConfig, docs: DaqDocument[]): Promise<number> {
    const ctx = this.ctx;
    const now = ctx.now();
    const key = `${step.name}-${now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${randomBytes(4).toString('hex')}`;
    const dir = join(ctx.site.log_dir, 'batch');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const paths = { stdout: join(dir, `${key}.out`), stderr: join(dir, `${key}.err`), jobFile: join(dir, `${key}.json`), script: join(dir, `${key}.sh`) };
    const batch: BatchJob = { system: this.batch.name, stdout: paths.stdout, stderr: paths.stderr, submitted: now.toISOString() };
    const leaseUntil = new Date(now.getTime() + QUEUED_LEASE_MS).toISOString();
    const results = await Promise.all(
      docs.map((doc) =>
        claim(ctx, doc, {
          type: 'claim',
          step: step.name,
          mode: 'queue',
          site: ctx.site.name,
          agent: ctx.name,
          host: ctx.host,
          lease_until: leaseUntil,
          batch,
          version: step.version,
        }),
      ),
    );
    const claimed = results.flatMap((r) => (r.kind === 'written' ? [r.doc] : []));
    this.counters.lost_races += results.filter((r) => r.kind === 'conflict').length;
    for (const refused of results.filter((r) => r.kind === 'illegal')) ctx.logger.warn(`not claimed: ${refused.error.message}`);
    if (claimed.length === 0) return 0;
    this.counters.claimed += claimed.length;

    let id: string;
    const command = [...this.config.mesh, '--config', resolve(ctx.config.source), 'run-batch', paths.jobFile, '--site', ctx.site.name];
    try {
      const credentials = passwordFileFor(ctx.site.credentials_of);
      const job: BatchJobFile = {
        version: 1,
        site: ctx.site.name,
        step: step.name,
        stdout: paths.stdout,
        stderr: paths.stderr,
        docs: claimed.map((d) => d._id),
        ...(this.config.walltime_s !== undefined ? { walltime_s: this.config.walltime_s } : {}),
        ...(credentials ? { credentials } : {}),
      };
      await writeJobFile(paths.jobFile, job);
      await writeJobScript(paths.script, command);
      id = await this.batch.submit({
        name: `mesh-${ctx.site.name}-${step.name}`,
        script: paths.script,
        stdout: paths.stdout,
        stderr: paths.stderr,
        options: this.submissionOptions(),
      });
    } catch (error) {
      ctx.logger.error({ step: step.name, docs: claimed.length }, `batch submission failed, releasing the claims: ${errorMessage(error)}`);
      await Promise.all(
        claimed.map((doc) =>
          apply(ctx, doc, { type: 'release', step: step.name, agent: ctx.name })
            .then(() => this.counters.released++)
            .catch((e) => ctx.logger.error({ doc: doc._id }, `cannot release: ${errorMessage(e)}`)),
        ),
      );
      await Promise.all([rm(paths.jobFile, { force: true }), rm(paths.script, { force: true })]);
      throw error;
    }
    this.counters.jobs++;
    ctx.logger.info({ step: step.name, job: id, docs: claimed.length }, `submitted ${this.batch.name} job ${id}`);
    // The job may already have started some documents: `submitted` matches the claim by the
    // job's stdout path, whatever its status, and `apply` re-reads on a conflict.
    await Promise.all(
      claimed.map((doc) =>
        apply(ctx, doc, { type: 'submitted', step: step.name, batch: { ...batch, id }, script: paths.script, command: command.join(' ') }).catch((error) => {
          if (!isMeshError(error, 'ILLEGAL_TRANSITION')) throw error;
          ctx.logger.debug({ doc: doc._id, job: id }, `job id not recorded: ${errorMessage(error)}`);
        }),
      ),
    );
    return claimed.length;
  }

  /** The site's options, and the walltime when `batch.walltime` gave it and the options did not. */
  private submissionOptions(): string[] {
    const { system, options, walltime_s } = this.config;
    if (walltime_s === undefined || walltimeInOptions(system, options)) return [...options];
    return [...options, ...walltimeOptions(system, walltime_s)];
  }
}
