/**
 * Reprocessing, as the server judges it: the one way a done step's record (`procN` at the top
 * level) may leave or change. An operator's `reprocess` of step S (core/state.ts) moves S's
 * record and every later done record whole into `superseded[]` and sets the status to S's ready
 * status, with a history entry that names S (`reprocess`) and says why (`note`). So a write may
 * drop or replace the done record of step T only when, in the same write,
 * - the stored record is appended unchanged to `superseded` as `{ step: T, record, … }`, and
 * - an appended history entry reprocesses T or a step before it.
 * `superseded` is append-only, and every entry a write adds needs such a history entry; the
 * edges of TRANSITIONS that only a reprocess takes (`good → good`, `good → closed`,
 * `<later step> failed → closed`) need an entry that names the step. Who may write that entry
 * (operators; the relay and the admin party are not held to authorship) is core/write-rules.ts'.
 *
 * couchapp/es5-rules.ts SUPERSEDE_ES5 is the line-by-line port; test/unit/design.test.ts keeps
 * the messages equal.
 */
import { parseStatus } from './document.js';
import { ISO_DATE, isObject, show } from './invariants.js';
import { sameValue } from './same-value.js';

type Obj = Record<string, unknown>;

function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function readyOf(index: number): string {
  return index === 0 ? 'closed' : 'good';
}

/** Whether one transition from `from` to `to` exists in TRANSITIONS only for a reprocess. */
export function reprocessOnlyEdge(from: unknown, to: unknown, stepNames: readonly string[]): boolean {
  if (from === 'good') return to === 'good' || to === 'closed';
  const parsed = parseStatus(from, stepNames);
  return parsed !== undefined && parsed.kind === 'failed' && to === 'closed' && parsed.step !== stepNames[0];
}

/** The history entries the write appends (none when history is not append-only: provenance says so). */
function appendedHistory(oldDoc: Obj, newDoc: Obj): unknown[] {
  return listOf(newDoc.history).slice(listOf(oldDoc.history).length);
}

/** The index of the earliest step an appended history entry reprocesses, -1 for none. */
function earliestReprocessed(oldDoc: Obj, newDoc: Obj, stepNames: readonly string[]): number {
  const entries = appendedHistory(oldDoc, newDoc);
  let earliest = -1;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (!isObject(entry) || typeof entry.reprocess !== 'string') continue;
    const index = stepNames.indexOf(entry.reprocess);
    if (index >= 0 && (earliest < 0 || index < earliest)) earliest = index;
  }
  return earliest;
}

/** Whether this write supersedes the stored done record of `step` as a reprocess must (see above). */
export function supersededHere(oldDoc: Obj, newDoc: Obj, step: string, stepNames: readonly string[]): boolean {
  const earliest = earliestReprocessed(oldDoc, newDoc, stepNames);
  if (earliest < 0 || earliest > stepNames.indexOf(step)) return false;
  const added = listOf(newDoc.superseded).slice(listOf(oldDoc.superseded).length);
  for (let i = 0; i < added.length; i++) {
    const entry = added[i];
    if (isObject(entry) && entry.step === step && sameValue(entry.record, oldDoc[step])) return true;
  }
  return false;
}

/** What a write from `oldDoc` to `newDoc` may not do to `superseded` and to the reprocess entries of the history. */
export function supersedeProblems(oldDoc: Obj, newDoc: Obj, stepNames: readonly string[]): string[] {
  const before = oldDoc.superseded;
  const after = newDoc.superseded;
  if (before !== undefined && !Array.isArray(after)) return ['superseded cannot be removed'];
  if (after !== undefined && !Array.isArray(after)) return [`superseded is ${show(after)}, expected a list of superseded records`];
  const old = listOf(before);
  const list = listOf(after);
  if (list.length < old.length) return ['superseded entries cannot be removed'];
  for (let i = 0; i < old.length; i++) if (!sameValue(old[i], list[i])) return [`superseded entry ${i} cannot change`];
  const problems: string[] = [];
  const entries = appendedHistory(oldDoc, newDoc);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (!isObject(entry)) continue;
    if (entry.reprocess === undefined) {
      if (reprocessOnlyEdge(entry.from, entry.to, stepNames))
        problems.push(`history entry from ${show(entry.from)} to ${show(entry.to)} is a reprocess: it must name the step it reprocesses`);
      continue;
    }
    const index = typeof entry.reprocess === 'string' ? stepNames.indexOf(entry.reprocess) : -1;
    if (index < 0) {
      problems.push(`history entry reprocesses ${show(entry.reprocess)}, which is not a step`);
      continue;
    }
    if (entry.to !== readyOf(index)) problems.push(`history entry reprocessing ${entry.reprocess} goes to ${show(entry.to)}, not ${show(readyOf(index))}`);
    if (typeof entry.note !== 'string' || entry.note.length === 0) problems.push(`history entry reprocessing ${entry.reprocess} has no note saying why`);
  }
  const earliest = earliestReprocessed(oldDoc, newDoc, stepNames);
  for (let i = old.length; i < list.length; i++) {
    const entry = list[i];
    if (!isObject(entry) || typeof entry.step !== 'string' || stepNames.indexOf(entry.step) < 0 || !isObject(entry.record)) {
      problems.push(`superseded entry ${i} is not { step, record, at, by, user, why, version } of a step`);
      continue;
    }
    const step = entry.step;
    if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at))
      problems.push(`superseded entry ${i} (${step}) at is ${show(entry.at)}, expected an ISO date`);
    if (typeof entry.by !== 'string' || entry.by.length === 0 || typeof entry.why !== 'string' || entry.why.length === 0)
      problems.push(`superseded entry ${i} (${step}) must say by whom and why`);
    if (earliest < 0 || earliest > stepNames.indexOf(step))
      problems.push(`superseded entry ${i} (${step}) comes with no reprocess of ${step} or a step before it`);
  }
  return problems;
}
