/**
 * Provenance that cannot be rewritten: what no write may do to a data document, whoever
 * writes it and by whatever path (single, bulk, replicated). The generated validate_doc_update
 * carries an ES5 port of these functions (couchapp/es5-rules.ts); test/unit/design.test.ts
 * keeps the two in agreement, message for message.
 *
 * - the catalogue fields (file, checksum, size, run, date closed) never change once set;
 * - a done step's record (`procN` at the top level) never changes, in any field, and is never
 *   removed; a pending record (`pending.procN`) leaves only as the step's success;
 * - `attempts` and `uncounted` never decrease;
 * - `history` is append-only, and the entries a write appends form a chain of single
 *   transitions from the stored status to the new one (none when the status stays; one per
 *   change; several when a replicated write collapses what happened on another server);
 * - `duplicates[]` and the original scripts' `batchJob[]` are append-only;
 * - the one exception to the done records' rule is an operator's reprocess (core/supersede.ts).
 */
import { pendingRecord } from './document.js';
import { ISO_DATE, isObject, show, statusSuccessors } from './invariants.js';
import { sameValue } from './same-value.js';
import { supersedeProblems, supersededHere } from './supersede.js';

export { sameValue };

type Obj = Record<string, unknown>;

/** Fields written once by ingest: the catalogue of the raw file. */
export const CATALOGUE_FIELDS = Object.freeze(['run_name', 'file_number', 'file', 'size_in_bytes', 'checksum', 'date_closed']);

function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** What is wrong with `entries` as the chain of transitions from `from` (null: a new document) to `to`. */
export function chainProblems(from: unknown, to: unknown, entries: readonly unknown[], stepNames: readonly string[]): string[] {
  if (entries.length === 0) return from === to ? [] : [`status changed from ${show(from)} to ${show(to)} without a history entry`];
  const next = statusSuccessors(stepNames);
  let at = from;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (!isObject(entry)) return [`history entry ${show(entry)} is not an object`];
    if (entry.from !== at) return [`history entry from ${show(entry.from)} does not follow ${show(at)}`];
    const legal =
      at === null
        ? entry.to === 'closed'
        : typeof at === 'string' && Object.prototype.hasOwnProperty.call(next, at) && next[at].indexOf(entry.to as string) >= 0;
    if (!legal) return [`history cannot go from ${show(at)} to ${show(entry.to)}`];
    if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at)) return [`history entry at is ${show(entry.at)}, expected an ISO date`];
    if (typeof entry.by !== 'string' || entry.by.length === 0) return [`history entry by is ${show(entry.by)}`];
    at = entry.to;
  }
  return at === to ? [] : [`history ends at ${show(at)} but status is ${show(to)}`];
}

/** Problems of an append-only list: `before` must be a prefix of `after`. */
export function appendOnly(name: string, before: unknown, after: unknown): string[] {
  if (before === undefined) return [];
  if (!Array.isArray(after)) return [`${name} cannot be removed`];
  const old = listOf(before);
  if (after.length < old.length) return [`${name} entries cannot be removed`];
  for (let i = 0; i < old.length; i++) if (!sameValue(old[i], after[i])) return [`${name} entry ${i} cannot change`];
  return [];
}

/** The history entries a write from `oldDoc` (null: creation) to `newDoc` appends. */
export function appendedEntries(oldDoc: Obj | null, newDoc: Obj): unknown[] {
  return listOf(newDoc.history).slice(oldDoc === null ? 0 : listOf(oldDoc.history).length);
}

/** What a write from `oldDoc` to `newDoc` may not do to the record, whoever writes it. */
export function provenanceProblems(oldDoc: Obj, newDoc: Obj, stepNames: readonly string[]): string[] {
  const problems: string[] = [];
  for (let i = 0; i < CATALOGUE_FIELDS.length; i++) {
    const field = CATALOGUE_FIELDS[i];
    if (oldDoc[field] !== undefined && !sameValue(oldDoc[field], newDoc[field])) problems.push(`${field} cannot change once catalogued`);
  }
  for (let i = 0; i < stepNames.length; i++) {
    const step = stepNames[i];
    const done = oldDoc[step];
    if (isObject(done)) {
      if (supersededHere(oldDoc, newDoc, step, stepNames)) continue;
      if (!isObject(newDoc[step])) problems.push(`${step} cannot be removed`);
      else if (!sameValue(done, newDoc[step])) problems.push(`${step} is done and cannot change`);
      continue;
    }
    const before = pendingRecord(oldDoc, step);
    if (before === undefined) continue;
    // A pending record leaves `pending` only to become the step's success.
    const after = pendingRecord(newDoc, step) ?? (isObject(newDoc[step]) ? newDoc[step] : undefined);
    if (after === undefined) {
      problems.push(`pending.${step} cannot be removed before ${step} is done`);
      continue;
    }
    const counters = ['attempts', 'uncounted'];
    for (let c = 0; c < counters.length; c++) {
      const was = before[counters[c]];
      const now = after[counters[c]];
      if (typeof was === 'number' && !(typeof now === 'number' && now >= was))
        problems.push(`${step}.${counters[c]} cannot go down from ${show(was)} to ${show(now)}`);
    }
  }
  const history = appendOnly('history', Array.isArray(oldDoc.history) ? oldDoc.history : undefined, newDoc.history);
  problems.push(...history, ...appendOnly('duplicates', oldDoc.duplicates, newDoc.duplicates), ...appendOnly('batchJob', oldDoc.batchJob, newDoc.batchJob));
  problems.push(...supersedeProblems(oldDoc, newDoc, stepNames));
  if (history.length === 0) problems.push(...chainProblems(oldDoc.status, newDoc.status, appendedEntries(oldDoc, newDoc), stepNames));
  return problems;
}

/** What a new data document (or a recreated one) must show: a history from nothing to its status. */
export function creationProblems(newDoc: Obj, stepNames: readonly string[]): string[] {
  if (!Array.isArray(newDoc.history)) return ['history is missing: a document starts with its entry from null to "closed"'];
  return chainProblems(null, newDoc.status, newDoc.history, stepNames);
}

export interface ChainEntry {
  at: string;
  from: string | null;
  to: string;
  by: string;
  user: string | null;
}

/**
 * A history that leads from nothing to `status` by the fewest single transitions, every entry
 * at `at` by `by`: for documents written before CouchMesh kept history (an adopted database)
 * and for fixtures. It says what must have happened, not who did it: the server accepts it only
 * from the coordinator's replication or the admin party, which are not held to authorship.
 */
export function historyTo(
  status: string,
  stepNames: readonly string[],
  at = new Date().toISOString(),
  by = 'mesh/adopted',
  user: string | null = null,
): ChainEntry[] {
  const next = statusSuccessors(stepNames);
  const previous = new Map<string, string | null>([['closed', null]]);
  const queue = ['closed'];
  while (queue.length > 0 && !previous.has(status)) {
    const current = queue.shift() as string;
    for (const to of next[current] ?? []) {
      if (!previous.has(to)) {
        previous.set(to, current);
        queue.push(to);
      }
    }
  }
  if (!previous.has(status)) throw new Error(`no history leads to status ${JSON.stringify(status)}`);
  const path: string[] = [];
  for (let s: string | null = status; s !== null; s = previous.get(s) ?? null) path.unshift(s);
  return path.map((to, i) => ({ at, from: i === 0 ? null : path[i - 1], to, by, user }));
}
