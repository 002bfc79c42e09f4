import { MeshError } from './errors.js';
import {
  type BatchJob,
  type BatchJobEntry,
  type DaqDocument,
  type HistoryEntry,
  type ParsedStatus,
  type RunIdentity,
  type StatusKind,
  type StepRecord,
  type SupersededEntry,
  formatStatus,
  isDone,
  parseStatus,
  stepRecord,
  withStepRecord,
} from './document.js';

/** What the state machine needs to know of the pipeline: the steps in order and their limits. */
export interface PipelineSteps {
  readonly steps: ReadonlyArray<{ readonly name: string; readonly max_attempts: number; readonly version?: string }>;
}

/**
 * Which status kinds may follow which. `ready` stands for the status a step waits in:
 * `closed` for the first step, `good` for the others. The generated validate_doc_update
 * enforces the same table on the server.
 *
 * `good → ready` (good again), `good → closed` and `failed → closed` exist only for an
 * operator's `reprocess` (a done step made ready again, from a document at rest): the server
 * accepts a history entry along them only when it names the step reprocessed and the write
 * moves the done records into `superseded` (core/supersede.ts). They are the table's only way
 * back, and they make it cyclic: see statusClosure (core/invariants.ts) for what that does to
 * the check of replicated writes.
 */
export const TRANSITIONS: Readonly<Record<StatusKind, readonly (StatusKind | 'ready')[]>> = Object.freeze({
  closed: Object.freeze(['queued', 'in_progress', 'failed', 'bad'] as const),
  good: Object.freeze(['queued', 'in_progress', 'failed', 'bad', 'ready', 'closed'] as const),
  queued: Object.freeze(['in_progress', 'queued', 'ready', 'failed'] as const),
  in_progress: Object.freeze(['good', 'in_progress', 'queued', 'ready', 'failed'] as const),
  failed: Object.freeze(['ready', 'failed', 'bad', 'closed'] as const),
  bad: Object.freeze(['bad'] as const),
});

/** Every event may name the account that writes it (CouchDB's `userCtx.name`; null without accounts). */
export type MeshEvent = MeshAct & { user?: string | null };

type MeshAct =
  /** Take a ready step: `run` runs it here (→ in progress), `queue` hands it to a batch job (→ queued). */
  | {
      type: 'claim';
      step: string;
      mode: 'run' | 'queue';
      site: string;
      agent: string;
      host: string;
      lease_until: string;
      batch?: BatchJob;
      /** The step's `version` in the claiming agent's config: the record keeps it. */
      version?: string;
    }
  /** A batch job starts a queued step (`version`: the step's in the job's config, which is what runs). */
  | { type: 'start'; step: string; site: string; agent: string; host: string; lease_until: string; version?: string }
  /** `run`: the identity of the process just started for this claim (the first renewal after the spawn). */
  | { type: 'renew'; step: string; agent: string; lease_until: string; run?: RunIdentity }
  /**
   * The batch system accepted the job: its id joins the claim whose job it is (same `stdout`
   * path), and the submission joins the original scripts' `batchJob` list (`script`, `command`).
   */
  | { type: 'submitted'; step: string; batch: BatchJob; script: string; command: string }
  | { type: 'succeed'; step: string; agent: string; result: StepResult }
  /** `final`: the cause is not the document's (e.g. the configuration) and a retry would meet it again: `<step> failed` now, whatever the attempts left; `retry` makes it ready once the cause is fixed. */
  | { type: 'fail'; step: string; agent: string; reason: string; result?: Partial<StepResult>; retry_after: string; final?: boolean }
  /** Give a claimed step back without it counting as an attempt (graceful shutdown). */
  | { type: 'release'; step: string; agent: string }
  /** The claim's lease ran out: ready again, or failed past the attempt limit. */
  | { type: 'expire'; step: string; by: string }
  /** The batch system lost the job (cancelled, failed, unknown). */
  | { type: 'lost'; step: string; by: string; reason: string }
  /** A ready step whose counted attempts already reach `max_attempts` (the limit was lowered): `<step> failed`, for an operator. */
  | { type: 'exhaust'; step: string; by: string }
  /** An operator makes a failed step ready again. */
  | { type: 'retry'; step: string; by: string; why?: string }
  /**
   * An operator makes a done step ready again (a new version of its program, `mesh reprocess`):
   * its record and every later done step's move whole into `superseded`; the later steps re-run after it.
   */
  | { type: 'reprocess'; step: string; by: string; why: string }
  | { type: 'mark_bad'; by: string; reason: string };

export interface StepResult {
  exit_code: number | null;
  signal?: string | null;
  duration_s: number;
  file?: string;
  checksum?: { sha256: string };
  stdout?: string;
  stderr?: string;
  stderr_tail?: string;
  /** Bytes of the output `file`, for the original scripts' `file_size`. */
  file_size?: number;
  /** The program that ran, for the original scripts' `processname`. */
  processname?: string;
}

export type TransitionResult = { ok: true; doc: DaqDocument } | { ok: false; error: MeshError };

/** Earlier attempts kept in a record (`past_attempts`), newest last. */
export const PAST_ATTEMPTS_KEPT = 10;

export function stepIndex(pipeline: PipelineSteps, step: string): number {
  return pipeline.steps.findIndex((s) => s.name === step);
}

function readyStatus(pipeline: PipelineSteps, step: string): 'closed' | 'good' {
  return stepIndex(pipeline, step) === 0 ? 'closed' : 'good';
}

/** The first step not done, or undefined when every step is done. */
export function nextStep(doc: DaqDocument, pipeline: PipelineSteps): string | undefined {
  return pipeline.steps.find((s) => !isDone(doc, s.name))?.name;
}

export function isComplete(doc: DaqDocument, pipeline: PipelineSteps): boolean {
  return doc.status === 'good' && nextStep(doc, pipeline) === undefined;
}

/** The step this document is ready for at `now`, if any. */
export function readyFor(doc: DaqDocument, pipeline: PipelineSteps, now: Date): string | undefined {
  const step = nextStep(doc, pipeline);
  if (step === undefined || doc.status !== readyStatus(pipeline, step)) return undefined;
  const record = stepRecord(doc, step);
  if (record?.retry_after && Date.parse(record.retry_after) > now.getTime()) return undefined;
  return step;
}

export function leaseExpired(record: StepRecord | undefined, now: Date): boolean {
  return !record?.lease_until || Date.parse(record.lease_until) <= now.getTime();
}

function illegal(doc: DaqDocument, event: MeshEvent, why: string): TransitionResult {
  return {
    ok: false,
    error: new MeshError('ILLEGAL_TRANSITION', `${doc._id}: cannot ${event.type}${'step' in event ? ` ${event.step}` : ''} from "${doc.status}": ${why}`),
  };
}

/** History is append-only (the server refuses anything else): every status change adds one entry. */
function next(doc: DaqDocument, to: ParsedStatus, by: string, user: string | null, now: Date, note?: string): TransitionResult {
  const status = formatStatus(to);
  const entry: HistoryEntry = { at: now.toISOString(), from: doc.status, to: status, by, user };
  if (doc._rev) entry.rev = doc._rev;
  if (note) entry.note = note;
  const history = [...(Array.isArray(doc.history) ? doc.history : []), entry];
  return { ok: true, doc: { ...doc, status, history } };
}

/**
 * A document that this many batch jobs lost without ever starting it fails: those losses are not
 * charged as attempts, so without a bound a job that dies at once would be resubmitted for ever.
 */
export const UNSTARTED_LIMIT = 10;

/** Attempts that count against `max_attempts`: all of them but the released ones and those before an operator's retry. */
export function countedAttempts(record: StepRecord | undefined): number {
  return (record?.attempts ?? 0) - (record?.uncounted ?? 0);
}

/** What an attempt that ended leaves in `past_attempts`: who ran it, when, and how it ended. */
function attemptSummary(record: StepRecord): Record<string, unknown> {
  const { attempts, site, agent, host, started, finished, ok, exit_code, signal, reason, stderr_tail, stdout, stderr, batch } = record;
  return prune({ attempt: attempts, site, agent, host, started, finished, ok, exit_code, signal, reason, stderr_tail, stdout, stderr, batchjob_id: batch?.id });
}

/** The record's earlier attempts with its own (if it ran) appended: at most PAST_ATTEMPTS_KEPT. */
function pastWith(record: StepRecord | undefined): unknown[] | undefined {
  const past = Array.isArray(record?.past_attempts) ? [...(record.past_attempts as unknown[])] : [];
  if (record?.started) past.push(attemptSummary(record));
  return past.length > 0 ? past.slice(-PAST_ATTEMPTS_KEPT) : undefined;
}

/** Drops the claim fields of a record, keeping what it learned. */
function withoutClaim(record: StepRecord): StepRecord {
  const { lease_until: _lease, ...rest } = record;
  return rest;
}

/**
 * The one state machine: the document after `event` at `now`, or why the event is illegal.
 * Pure: it never touches the database; the caller writes the result with the document's `_rev`.
 */
export function transition(doc: DaqDocument, event: MeshEvent, now: Date, pipeline: PipelineSteps): TransitionResult {
  const current = parseStatus(
    doc.status,
    pipeline.steps.map((s) => s.name),
  );
  if (!current) return illegal(doc, event, 'unknown status');
  const at = now.toISOString();

  if (event.type === 'mark_bad') {
    if (current.kind === 'queued' || current.kind === 'in_progress') return illegal(doc, event, 'a step is running');
    return next(doc, { kind: 'bad' }, event.by, event.user ?? null, now, event.reason);
  }

  const index = stepIndex(pipeline, event.step);
  if (index < 0) return illegal(doc, event, 'unknown step');
  const limit = pipeline.steps[index].max_attempts;
  const record = stepRecord(doc, event.step);
  const attempts = record?.attempts ?? 0;
  const counted = countedAttempts(record);
  const user = event.user ?? null;
  const sameStep = current.step === event.step;
  const ownsClaim = 'agent' in event && record?.agent === event.agent;

  switch (event.type) {
    case 'claim': {
      const reclaim = sameStep && (current.kind === 'in_progress' || current.kind === 'queued') && leaseExpired(record, now);
      if (!reclaim && readyFor(doc, pipeline, now) !== event.step) return illegal(doc, event, 'the step is not ready');
      if (counted >= limit) return illegal(doc, event, `attempt limit ${limit} reached`);
      // A new attempt starts clean: nothing of an earlier one but its number and its summary.
      const claimed: StepRecord = {
        attempts: attempts + 1,
        uncounted: record?.uncounted,
        unstarted: record?.unstarted,
        site: event.site,
        agent: event.agent,
        host: event.host,
        account: user,
        started: at,
        lease_until: event.lease_until,
        ...(event.batch ? { batch: event.batch } : {}),
        version: event.version,
        past_attempts: pastWith(record),
      };
      const kind = event.mode === 'run' ? 'in_progress' : 'queued';
      return next(
        withStepRecord(doc, event.step, prune(claimed)),
        { kind, step: event.step },
        `${event.site}/${event.agent}`,
        user,
        now,
        reclaim ? 'lease expired, reclaimed' : undefined,
      );
    }
    case 'start': {
      if (!(sameStep && current.kind === 'queued')) return illegal(doc, event, 'the step is not queued');
      const started: StepRecord = prune({
        ...(record as StepRecord),
        site: event.site,
        agent: event.agent,
        host: event.host,
        account: user,
        started: at,
        lease_until: event.lease_until,
        version: event.version,
      });
      return next(withStepRecord(doc, event.step, started), { kind: 'in_progress', step: event.step }, `${event.site}/${event.agent}`, user, now);
    }
    case 'renew': {
      if (!(sameStep && (current.kind === 'in_progress' || current.kind === 'queued'))) return illegal(doc, event, 'the step is not claimed');
      if (!ownsClaim) return illegal(doc, event, `the claim belongs to ${record?.agent ?? 'nobody'}`);
      // A renewal is not a transition: no history entry, the status stays.
      return {
        ok: true,
        doc: withStepRecord(doc, event.step, { ...(record as StepRecord), lease_until: event.lease_until, ...(event.run ? { run: event.run } : {}) }),
      };
    }
    case 'submitted': {
      if (!(sameStep && (current.kind === 'in_progress' || current.kind === 'queued'))) return illegal(doc, event, 'the step is not claimed');
      const job = record?.batch;
      const id = event.batch.id;
      if (!job || job.stdout !== event.batch.stdout || job.system !== event.batch.system || id === undefined)
        return illegal(doc, event, 'the claim belongs to another batch job');
      if (job.id !== undefined && job.id !== id) return illegal(doc, event, `the claim already names job ${job.id}`);
      if (job.id === id) return { ok: true, doc };
      // Like a renewal, not a transition: no history entry, the status stays.
      const entry: BatchJobEntry = {
        number: jobNumber(id),
        script: event.script,
        stdout: job.stdout ?? '',
        stderr: job.stderr ?? '',
        command: event.command,
        type: job.system,
        date: at,
      };
      const submitted = withStepRecord(doc, event.step, { ...(record as StepRecord), batch: { ...job, id } });
      return { ok: true, doc: { ...submitted, batchJob: [...(Array.isArray(doc.batchJob) ? doc.batchJob : []), entry] } };
    }
    case 'succeed': {
      if (!(sameStep && current.kind === 'in_progress')) return illegal(doc, event, 'the step is not in progress');
      if (!ownsClaim) return illegal(doc, event, `the claim belongs to ${record?.agent ?? 'nobody'}`);
      const claim = record as StepRecord;
      // The original scripts' fields next to CouchMesh's: their readers know only these.
      const originals = { date: at, hostname: claim.host, batchjob: claim.batch?.id === undefined ? undefined : jobNumber(claim.batch.id) };
      const done = prune({
        ...withoutClaim(claim),
        ...event.result,
        ...originals,
        ok: true,
        finished: at,
        reason: undefined,
        stderr_tail: undefined,
        retry_after: undefined,
      });
      return next(withStepRecord(doc, event.step, done), { kind: 'good' }, `${record?.site}/${event.agent}`, user, now);
    }
    case 'fail': {
      if (!(sameStep && (current.kind === 'in_progress' || current.kind === 'queued'))) return illegal(doc, event, 'the step is not claimed');
      if (!ownsClaim) return illegal(doc, event, `the claim belongs to ${record?.agent ?? 'nobody'}`);
      const failed = prune({ ...withoutClaim(record as StepRecord), ...(event.result ?? {}), ok: false, finished: at, reason: event.reason });
      const by = `${record?.site}/${event.agent}`;
      if (counted >= limit || event.final === true)
        return next(withStepRecord(doc, event.step, failed), { kind: 'failed', step: event.step }, by, user, now, event.reason);
      return next(
        withStepRecord(doc, event.step, { ...failed, retry_after: event.retry_after }),
        { kind: readyStatus(pipeline, event.step) },
        by,
        user,
        now,
        `attempt ${attempts} failed, retry after ${event.retry_after}`,
      );
    }
    case 'release': {
      if (!(sameStep && (current.kind === 'in_progress' || current.kind === 'queued'))) return illegal(doc, event, 'the step is not claimed');
      if (!ownsClaim) return illegal(doc, event, `the claim belongs to ${record?.agent ?? 'nobody'}`);
      // The attempt keeps its number (and its log files) but does not count against the limit.
      const released = prune({ ...withoutClaim(record as StepRecord), uncounted: (record?.uncounted ?? 0) + 1, ok: undefined });
      return next(
        withStepRecord(doc, event.step, released),
        { kind: readyStatus(pipeline, event.step) },
        `${record?.site}/${event.agent}`,
        user,
        now,
        'released',
      );
    }
    case 'expire':
    case 'lost': {
      if (!(sameStep && (current.kind === 'in_progress' || current.kind === 'queued'))) return illegal(doc, event, 'the step is not claimed');
      if (event.type === 'expire' && !leaseExpired(record, now)) return illegal(doc, event, 'the lease is still valid');
      const lapsedBecause = event.type === 'expire' ? `lease of ${record?.agent ?? 'unknown agent'} expired` : event.reason;
      // Still queued: no job ever started this document (killed at walltime, cancelled, its node
      // died), so like a release the attempt keeps its number but is not charged; unless job
      // after job dies before starting it, which is the jobs' fault (a broken batch.mesh, say).
      const neverStarted = current.kind === 'queued';
      const unstarted = neverStarted ? (record?.unstarted ?? 0) + 1 : record?.unstarted;
      const jobsBroken = neverStarted && (unstarted ?? 0) >= UNSTARTED_LIMIT;
      const reason = !neverStarted
        ? lapsedBecause
        : jobsBroken
          ? `${lapsedBecause}; ${unstarted} batch jobs ended without starting it: look at the jobs' stderr and batch.mesh, then mesh retry`
          : `${lapsedBecause}; never started, not counted`;
      const uncounted = neverStarted ? (record?.uncounted ?? 0) + 1 : record?.uncounted;
      const lapsed = prune({ ...withoutClaim(record as StepRecord), uncounted, unstarted, ok: false, reason });
      const spent = jobsBroken || (!neverStarted && counted >= limit);
      return next(
        withStepRecord(doc, event.step, lapsed),
        spent ? { kind: 'failed', step: event.step } : { kind: readyStatus(pipeline, event.step) },
        event.by,
        user,
        now,
        reason,
      );
    }
    case 'exhaust': {
      if (!(nextStep(doc, pipeline) === event.step && doc.status === readyStatus(pipeline, event.step))) return illegal(doc, event, 'the step is not waiting');
      if (counted < limit) return illegal(doc, event, `${counted} of ${limit} attempts used`);
      const reason = `attempt limit ${limit} reached (${counted} counted attempts)`;
      const spent = prune({ ...(record as StepRecord), ok: false, reason, retry_after: undefined });
      return next(withStepRecord(doc, event.step, spent), { kind: 'failed', step: event.step }, event.by, user, now, reason);
    }
    case 'retry': {
      if (!(sameStep && current.kind === 'failed')) return illegal(doc, event, 'the step has not failed');
      // Numbers go on growing; the failed attempts stop counting and move to past_attempts.
      const again = prune({ attempts, uncounted: attempts, ok: false, past_attempts: pastWith(record) });
      const note = event.why ? `retry requested: ${event.why}` : 'retry requested';
      return next(withStepRecord(doc, event.step, again), { kind: readyStatus(pipeline, event.step) }, event.by, user, now, note);
    }
    case 'reprocess':
      return reprocess(doc, event, current, now, pipeline);
  }
}

/** An attempt count carried over to a step made ready again: numbers go on growing (they name log files), none counts. */
function freshAttempts(record: StepRecord | undefined, past: unknown[] | undefined): StepRecord {
  const attempts = typeof record?.attempts === 'number' ? record.attempts : 0;
  return prune({ attempts, uncounted: attempts, ok: false, past_attempts: past });
}

/** The `reprocess` event: see MeshAct. Refused while a step is claimed, from `bad`, and for a step not done. */
function reprocess(
  doc: DaqDocument,
  event: Extract<MeshEvent, { type: 'reprocess' }>,
  current: ParsedStatus,
  now: Date,
  pipeline: PipelineSteps,
): TransitionResult {
  if (current.kind === 'queued' || current.kind === 'in_progress') return illegal(doc, event, 'a step is queued or in progress');
  if (current.kind === 'bad') return illegal(doc, event, 'the document is bad');
  if (!isDone(doc, event.step)) return illegal(doc, event, `${event.step} is not done`);
  if (event.why.trim().length === 0) return illegal(doc, event, 'a reprocess says why');
  const user = event.user ?? null;
  const at = now.toISOString();
  const superseded: SupersededEntry[] = Array.isArray(doc.superseded) ? [...doc.superseded] : [];
  let out: DaqDocument = doc;
  for (let i = stepIndex(pipeline, event.step); i < pipeline.steps.length; i++) {
    const { name, version } = pipeline.steps[i];
    if (isDone(doc, name)) {
      const done = doc[name] as StepRecord;
      superseded.push({ step: name, record: done, at, by: event.by, user, why: event.why, version: version ?? null });
      const { [name]: _left, ...rest } = out;
      out = withStepRecord(rest as DaqDocument, name, freshAttempts(done, undefined));
    } else {
      // A later step waiting for its retry, or failed: it starts afresh on the new inputs, like after an operator's retry.
      const waiting = stepRecord(doc, name);
      if (waiting) out = withStepRecord(out, name, freshAttempts(waiting, pastWith(waiting)));
    }
  }
  const moved = next({ ...out, superseded }, { kind: readyStatus(pipeline, event.step) }, event.by, user, now, event.why);
  if (!moved.ok) return moved;
  const history = [...moved.doc.history];
  history[history.length - 1] = { ...history[history.length - 1], reprocess: event.step };
  return { ok: true, doc: { ...moved.doc, history } };
}

/** A batch job's id as the original scripts wrote it: a number when it is one. */
export function jobNumber(id: string): number | string {
  return /^[1-9][0-9]{0,14}$/.test(id) ? Number(id) : id;
}

/** Removes keys whose value is undefined, so documents stay clean JSON. */
function prune<T extends object>(record: T): T {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as T;
}
