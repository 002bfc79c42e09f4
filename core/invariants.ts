/**
 * The rules a document must satisfy, shared by the agent (before it writes) and the server
 * (the generated validate_doc_update in couchapp/design.ts is an ES5 port of these functions;
 * a unit test keeps the two in agreement, message for message).
 *
 * Messages are plain strings so that the ES5 port can reproduce them exactly.
 */
import { documentProblems, formatStatus, isDone, parseStatus, pendingRecord } from './document.js';
import { TRANSITIONS } from './state.js';

type Obj = Record<string, unknown>;

/** An ISO 8601 date-time as the mesh writes it; also accepted by `Date.parse` in every engine. */
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

export function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A value for a message: JSON, at most 80 characters. */
export function show(value: unknown): string {
  return value === undefined ? 'missing' : String(JSON.stringify(value)).slice(0, 80);
}

/**
 * What is wrong with the document's status given its step records; empty when consistent.
 * A step record at the top level is the step's success (the original scripts' readers take
 * "`procN` present" to mean "done"): it may not say `ok: false`, and the step may not also be
 * pending. Then:
 * - `closed`: the first step is not done;
 * - `good`: the first step is done and the done steps form a prefix of the steps (so every
 *   `procN` present is a success);
 * - `<k> queued` / `<k> in progress`: every step before k done; `pending.k` claimed (agent,
 *   lease_until, attempts >= 1) and k not done;
 * - `<k> failed`: every step before k done; `pending.k` has `ok: false`;
 * - `bad`: anything.
 */
export function statusProblems(doc: unknown, stepNames: readonly string[]): string[] {
  if (!isObject(doc)) return ['not a JSON object'];
  const parsed = parseStatus(doc.status, stepNames);
  if (!parsed) return [`status ${show(doc.status)} is unknown`];
  const problems: string[] = [];
  const pending = doc.pending;
  if (pending !== undefined && !isObject(pending)) problems.push(`pending is ${show(pending)}, expected an object of step records`);
  for (const step of stepNames) {
    const record = doc[step];
    if (record !== undefined) {
      if (!isObject(record)) problems.push(`${step} is ${show(record)}, expected a record object`);
      else if (record.ok !== undefined && record.ok !== true)
        problems.push(`${step}.ok is ${show(record.ok)}: a step record at the top level is a success, an unfinished step's is pending.${step}`);
    }
    const waiting = isObject(pending) ? pending[step] : undefined;
    if (waiting === undefined) continue;
    if (!isObject(waiting)) problems.push(`pending.${step} is ${show(waiting)}, expected a record object`);
    else if (waiting.ok !== undefined && waiting.ok !== false) problems.push(`pending.${step}.ok is ${show(waiting.ok)}: a success is recorded as ${step}`);
    else if (record !== undefined) problems.push(`${step} is done and pending at once`);
  }
  const status = doc.status as string;
  const first = stepNames[0];
  if (parsed.kind === 'closed') {
    if (isDone(doc, first)) problems.push(`status closed but ${first} is done`);
  } else if (parsed.kind === 'good') {
    if (!isDone(doc, first)) problems.push(`status good but ${first} is not done`);
    let gap: string | undefined;
    for (const step of stepNames) {
      const done = isDone(doc, step);
      if (!done && gap === undefined) gap = step;
      else if (done && gap !== undefined) problems.push(`${step} is done but ${gap} before it is not`);
    }
  } else if (parsed.kind !== 'bad') {
    const step = parsed.step as string;
    for (const before of stepNames.slice(0, stepNames.indexOf(step))) {
      if (!isDone(doc, before)) problems.push(`status ${status} but ${before} is not done`);
    }
    const record = pendingRecord(doc, step);
    if (doc[step] !== undefined) {
      problems.push(`status ${status} but ${step} is already done`);
    } else if (record === undefined) {
      problems.push(`status ${status} but pending.${step} is missing`);
    } else if (parsed.kind === 'failed') {
      if (record.ok !== false) problems.push(`status ${status} but pending.${step}.ok is not false`);
    } else {
      if (typeof record.agent !== 'string' || record.agent.length === 0) problems.push(`status ${status} but pending.${step}.agent is ${show(record.agent)}`);
      if (typeof record.lease_until !== 'string' || !ISO_DATE.test(record.lease_until))
        problems.push(`status ${status} but pending.${step}.lease_until is ${show(record.lease_until)}`);
      const attempts = record.attempts;
      if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1)
        problems.push(`status ${status} but pending.${step}.attempts is ${show(attempts)}`);
    }
  }
  return problems;
}

/**
 * Why an agent cannot handle the document: it is malformed (core/document.ts), or its status
 * contradicts its records (a database the original scripts wrote, not adopted yet), which the
 * server would refuse to build on. Empty when it can.
 */
export function handlingProblems(doc: unknown, stepNames: readonly string[]): string[] {
  const malformed = documentProblems(doc, stepNames);
  return malformed.length > 0 ? malformed : statusProblems(doc, stepNames);
}

/** The statuses one transition of `TRANSITIONS` leads to from `status` (a known status). */
function successors(status: string, stepNames: readonly string[]): string[] {
  const parsed = parseStatus(status, stepNames);
  if (!parsed) return [];
  const readyOf = (index: number): 'closed' | 'good' => (index === 0 ? 'closed' : 'good');
  const out: string[] = [];
  for (const target of TRANSITIONS[parsed.kind]) {
    const perStep = target === 'queued' || target === 'in_progress' || target === 'failed';
    if (parsed.step !== undefined) {
      const index = stepNames.indexOf(parsed.step);
      if (target === 'ready') out.push(readyOf(index));
      else if (perStep) out.push(formatStatus({ kind: target, step: parsed.step }));
      else out.push(target);
    } else if (perStep) {
      // closed and good are waiting statuses: a step kind follows them for the steps that wait there.
      stepNames.forEach((step, index) => {
        if (readyOf(index) === parsed.kind) out.push(formatStatus({ kind: target, step }));
      });
    } else {
      out.push(target === 'ready' ? parsed.kind : target);
    }
  }
  return out;
}

/** Every known status of a pipeline, in a stable order. */
export function allStatuses(stepNames: readonly string[]): string[] {
  const statuses = ['closed', 'good', 'bad'];
  for (const step of stepNames) statuses.push(`${step} queued`, `${step} in progress`, `${step} failed`);
  return statuses;
}

const closures = new Map<string, Readonly<Record<string, readonly string[]>>>();
const successorTables = new Map<string, Readonly<Record<string, readonly string[]>>>();

/** `statusSuccessors(steps)[from]`: the statuses one transition of `TRANSITIONS` leads to. */
export function statusSuccessors(stepNames: readonly string[]): Readonly<Record<string, readonly string[]>> {
  const key = JSON.stringify(stepNames);
  const cached = successorTables.get(key);
  if (cached) return cached;
  const table: Record<string, readonly string[]> = {};
  for (const status of allStatuses(stepNames)) table[status] = Object.freeze(successors(status, stepNames));
  const frozen = Object.freeze(table);
  successorTables.set(key, frozen);
  return frozen;
}

/**
 * The reflexive-transitive closure of `TRANSITIONS` over the step-indexed status graph:
 * `statusClosure(steps)[from]` lists every status reachable from `from` in any number of
 * transitions, `from` itself included (a write that keeps the status is no transition).
 *
 * The server checks the closure rather than single edges because a write may come from
 * replication: a replicator only carries leaf revisions, so a second server sees the
 * intermediate states collapsed into one write (`closed` → `good` when proc0 was claimed,
 * run and finished on the other side between two replications).
 *
 * The reprocess edges (`good → good`, `good → closed`, `failed → closed`; core/state.ts) make
 * the graph cyclic: every status but `bad` now reaches every status, so for documents not bad
 * this check refuses nothing any more (it still refuses leaving `bad`). That is right for
 * replication, which may carry a reprocess and the re-runs after it in one write (`good` →
 * `good` with proc1 replaced). What still holds such a write is precise, and it is in
 * core/provenance.ts and core/supersede.ts: history append-only, its new entries a chain of
 * single edges from the stored status to the new one, a reprocess-only edge taken only by an
 * entry naming its step, and a done record replaced only with the stored one appended
 * unchanged to `superseded` in the same write.
 */
export function statusClosure(stepNames: readonly string[]): Readonly<Record<string, readonly string[]>> {
  const key = JSON.stringify(stepNames);
  const cached = closures.get(key);
  if (cached) return cached;
  const closure: Record<string, readonly string[]> = {};
  for (const start of allStatuses(stepNames)) {
    const seen = new Set<string>([start]);
    const queue = [start];
    while (queue.length > 0) {
      for (const next of successors(queue.shift() as string, stepNames)) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    closure[start] = Object.freeze(allStatuses(stepNames).filter((s) => seen.has(s)));
  }
  const frozen = Object.freeze(closure);
  closures.set(key, frozen);
  return frozen;
}

/**
 * What one write from `oldDoc` to `newDoc` may not do to the status, even when it collapses
 * several transitions (a replicated write): leave the closure of the transition table
 * (core/provenance.ts judges the records and the history, core/write-rules.ts the type). An
 * unknown old status is not checked against the closure (there is nothing to reason from;
 * `statusProblems` judges the new one).
 */
export function editProblems(oldDoc: unknown, newDoc: unknown, stepNames: readonly string[]): string[] {
  if (!isObject(oldDoc) || !isObject(newDoc)) return ['not a JSON object'];
  const problems: string[] = [];
  const closure = statusClosure(stepNames);
  const from = oldDoc.status;
  const to = newDoc.status;
  if (
    typeof from === 'string' &&
    typeof to === 'string' &&
    Object.prototype.hasOwnProperty.call(closure, from) &&
    Object.prototype.hasOwnProperty.call(closure, to) &&
    closure[from].indexOf(to) < 0
  ) {
    problems.push(`status cannot go from ${show(from)} to ${show(to)}`);
  }
  return problems;
}
