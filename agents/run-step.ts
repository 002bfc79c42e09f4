import { type DaqDocument, parseStatus, stepRecord } from '../core/document.js';
import { readyFor } from '../core/state.js';
import type { AgentContext } from './context.js';
import { ensureEarlierRunsGone } from './run-identity.js';
import { type JobEnd, runClaimedStep, runFolder } from './step-job.js';
import { claim, compareAndSet } from './writes.js';

export interface RunStepOptions {
  /**
   * Set by batch jobs: the `batch.stdout` path of the job. The document is started only
   * while it is queued for that job (its path identifies the job before the id is known), so a
   * stale job never takes over a document that was re-queued for another job.
   */
  job?: string;
}

export type RunStepOutcome =
  | { end: JobEnd; doc: DaqDocument }
  /** Nothing was run: the document is not (or no longer) this caller's to run. */
  | { end: 'skipped'; code: 'BAD_INPUT' | 'CONFLICT'; reason: string };

const START_ATTEMPTS = 5;

/**
 * What `mesh run-step` and a batch job do for one document: start the step if it is queued
 * (for this job), claim it if it is ready (not for batch jobs), then run it to its recorded end.
 */
export async function runStep(ctx: AgentContext, docId: string, stepName: string, stop: AbortSignal, options: RunStepOptions = {}): Promise<RunStepOutcome> {
  const step = ctx.config.steps.find((s) => s.name === stepName);
  if (!step) return { end: 'skipped', code: 'BAD_INPUT', reason: `step ${JSON.stringify(stepName)} is not in the pipeline` };
  const stepNames = ctx.config.steps.map((s) => s.name);
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const doc = await ctx.db.get<DaqDocument>(docId);
    if (!doc) return { end: 'skipped', code: 'BAD_INPUT', reason: `document ${docId} does not exist in ${ctx.config.database}` };
    const leaseUntil = new Date(ctx.now().getTime() + step.lease_s * 1000).toISOString();
    const status = parseStatus(doc.status, stepNames);
    let claimed: DaqDocument | undefined;
    if (status?.kind === 'queued' && status.step === stepName) {
      const job = stepRecord(doc, stepName)?.batch;
      if (options.job !== undefined && job?.stdout !== options.job)
        return { end: 'skipped', code: 'CONFLICT', reason: `${docId} is queued for another batch job (${job?.id ?? job?.stdout ?? 'none'})` };
      const started = await compareAndSet(ctx, doc, {
        type: 'start',
        step: stepName,
        site: ctx.site.name,
        agent: ctx.name,
        host: ctx.host,
        lease_until: leaseUntil,
        version: step.version,
      });
      if (started.kind === 'illegal') return { end: 'skipped', code: 'CONFLICT', reason: `${docId}: cannot start ${stepName}: ${started.error.message}` };
      if (started.kind === 'written') claimed = started.doc;
    } else if (options.job === undefined && readyFor(doc, ctx.config, ctx.now()) === stepName) {
      // An earlier attempt's process on this host must be gone before another starts.
      const earlier = await ensureEarlierRunsGone(runFolder(ctx.site.log_dir, doc._id), doc, stepName);
      if (!earlier.gone) return { end: 'skipped', code: 'CONFLICT', reason: `${docId}: not claiming ${stepName}: ${earlier.reason}` };
      const result = await claim(ctx, doc, {
        type: 'claim',
        step: stepName,
        mode: 'run',
        site: ctx.site.name,
        agent: ctx.name,
        host: ctx.host,
        lease_until: leaseUntil,
        version: step.version,
      });
      if (result.kind === 'illegal') return { end: 'skipped', code: 'CONFLICT', reason: `${docId}: cannot claim ${stepName}: ${result.error.message}` };
      if (result.kind !== 'written') return { end: 'skipped', code: 'CONFLICT', reason: `${docId}: another agent claimed ${stepName} first` };
      claimed = result.doc;
    } else {
      const expected = options.job === undefined ? 'neither ready nor queued' : 'not queued for this job';
      return { end: 'skipped', code: options.job === undefined ? 'BAD_INPUT' : 'CONFLICT', reason: `${docId} is "${doc.status}": ${stepName} is ${expected}` };
    }
    // Not started: someone wrote between our read and our start (for example the submitter
    // recording the job id); read again and decide again.
    if (claimed) return (ctx.runStep ?? runClaimedStep)(ctx, claimed, stepName, stop);
  }
  return { end: 'skipped', code: 'CONFLICT', reason: `${docId}: could not start ${stepName} after ${START_ATTEMPTS} conflicting writes` };
}
