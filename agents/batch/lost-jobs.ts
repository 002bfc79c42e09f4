import * as files from '../../store/files.js';
import { type BatchJob, parseStatus, stepRecord } from '../../core/document.js';
import { errorMessage } from '../../core/errors.js';
import { leaseExpired } from '../../core/state.js';
import { type AgentContext, actor } from '../context.js';
import { compareAndSet } from '../writes.js';
import type { BatchState, BatchSystem } from './types.js';

/**
 * A job id the scheduler does not know is lost only once it is this old: the minute covers a
 * scheduler that lists a job a moment after accepting it, and clock skew between the
 * submitting host and the server. Schedulers forget finished jobs (Slurm after MinJobAge, 300 s
 * by default; Grid Engine as soon as they end), so the adapters say how a job ended where they
 * can (Grid Engine's from `qacct` and its list of finished jobs) and 'unknown' only when nothing
 * remembers it.
 */
export const UNKNOWN_GRACE_MS = 60_000;
/**
 * A queued claim whose job id was never recorded (the submitter died between claim and sbatch)
 * is lost after this. The submitter records the id as soon as sbatch/qsub answers, so two
 * minutes is long; and declaring it lost too early is harmless: a late `submitted` is refused
 * (the claim is gone) and the late job skips every document no longer queued for it
 * (run-step's job check), so nothing runs twice. (It was 10 minutes: the fault harness found
 * documents held that long by a lyon agent killed between its claims and sbatch.)
 */
export const UNSUBMITTED_GRACE_MS = 2 * 60_000;

export interface LostCounters {
  checked: number;
  lost: number;
  expired: number;
  /**
   * The site's jobs that hold documents and may still be queued or running (by job id, or by
   * stdout path before the id is recorded): what `batch.max_jobs` counts. A job the scheduler
   * could not be asked about counts, so a scheduler that does not answer never opens the gate.
   */
  active: Set<string>;
  /** Jobs in an error state deleted after their documents were made ready again. */
  deleted: number;
}

/**
 * Why a claimed document's batch job is lost, or undefined while it may still run it. Pure:
 * `state` is what the scheduler said about `job.id` after the document was read, so a job
 * that finished the document in between makes the caller's compare-and-set fail instead.
 */
export function lostReason(kind: 'queued' | 'in_progress', job: BatchJob, state: BatchState | undefined, now: Date): string | undefined {
  const age = now.getTime() - Date.parse(job.submitted ?? '');
  if (job.id === undefined) {
    // In progress without an id: the job runs and renews its lease; the lease decides.
    return kind === 'queued' && age > UNSUBMITTED_GRACE_MS
      ? `no batch job id was recorded within ${UNSUBMITTED_GRACE_MS / 60_000} min of the claim`
      : undefined;
  }
  switch (state) {
    case 'failed':
      return `batch job ${job.id} failed`;
    case 'stuck':
      return `batch job ${job.id} is in an error state and will not start`;
    case 'cancelled':
      return `batch job ${job.id} was cancelled`;
    case 'completed':
      return `batch job ${job.id} ended without recording a result`;
    case 'unknown':
      return Number.isNaN(age) || age > UNKNOWN_GRACE_MS ? `batch job ${job.id} is unknown to ${job.system}` : undefined;
    default:
      return undefined;
  }
}

/**
 * The lease sweeper of a batch site: for every queued or in-progress document of the site's
 * steps, expires a lapsed lease, or asks the batch system about the document's job and records
 * `lost` when the job is gone (ready again; the attempt counts only if the job had started the
 * document, core/state.ts; failed past the limit).
 * Every write is a compare-and-set on the revision that was judged. A job stuck in the queue in
 * an error state (Grid Engine's `Eqw`) is deleted once its documents were judged: left there,
 * an operator clearing the error would start it, and its documents are someone else's by then.
 */
export async function sweepLostJobs(ctx: AgentContext, batch: BatchSystem, limit = 5000): Promise<LostCounters> {
  const counters: LostCounters = { checked: 0, lost: 0, expired: 0, active: new Set(), deleted: 0 };
  const states = new Map<string, Promise<BatchState | undefined>>();
  const stateOf = (id: string): Promise<BatchState | undefined> => {
    let known = states.get(id);
    if (!known) {
      known = batch.state(id).catch((error) => {
        ctx.logger.warn({ job: id }, `cannot ask ${batch.name} about job ${id}: ${errorMessage(error)}`);
        return undefined;
      });
      states.set(id, known);
    }
    return known;
  };
  const stuck = new Set<string>();
  const stepNames = ctx.config.steps.map((s) => s.name);
  for (const step of ctx.steps) {
    for (const doc of await files.claimed(ctx.db, step.name, limit)) {
      const parsed = doc && parseStatus(doc.status, stepNames);
      if (!doc || !parsed || parsed.step !== step.name || (parsed.kind !== 'queued' && parsed.kind !== 'in_progress')) continue;
      const record = stepRecord(doc, step.name);
      counters.checked++;
      if (leaseExpired(record, ctx.now())) {
        if ((await compareAndSet(ctx, doc, { type: 'expire', step: step.name, by: actor(ctx) })).kind === 'written') counters.expired++;
        continue;
      }
      const job = record?.batch;
      if (!job || job.system !== batch.name || record?.site !== ctx.site.name) continue;
      const jobKey = job.id ?? job.stdout ?? doc._id;
      const state = job.id === undefined ? undefined : await stateOf(job.id);
      const reason = job.id !== undefined && state === undefined ? undefined : lostReason(parsed.kind, job, state, ctx.now());
      if (!reason) {
        counters.active.add(jobKey);
        continue;
      }
      if (state === 'stuck') stuck.add(job.id as string);
      const result = await compareAndSet(ctx, doc, { type: 'lost', step: step.name, by: actor(ctx), reason });
      if (result.kind === 'written') {
        const after = result.doc;
        counters.lost++;
        ctx.logger.warn({ doc: doc._id, step: step.name, job: job.id, status: after.status }, `lost: ${reason}`);
      } else if (result.kind === 'conflict') counters.active.add(jobKey);
    }
  }
  for (const id of stuck) {
    try {
      await batch.cancel(id);
      counters.deleted++;
      ctx.logger.warn({ job: id }, `deleted ${batch.name} job ${id}: it was in an error state, its documents are ready again`);
    } catch (error) {
      ctx.logger.warn({ job: id }, `cannot delete ${batch.name} job ${id} (in an error state): ${errorMessage(error)}`);
    }
  }
  return counters;
}
