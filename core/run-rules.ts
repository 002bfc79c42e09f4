/**
 * The server's rules for run documents (core/run-document.ts) beyond those of any data
 * document. A run document is judged first by core/write-rules.ts with the run steps as the
 * pipeline (status, records, history, authorship of the step records: the same as a file
 * document's), then by these:
 *
 * - its `_id` is `runinfo_<run_name>`;
 * - `members`, `late_members` and `custody` are append-only; `members` grows only before any run
 *   step has a record (a later file is a late member, so no step works on a list that changed);
 * - `closed_at` / `closed_by` are written once, an ISO date and "quiet" or "marker";
 * - the run's catalogue (`members`, `late_members`, `last_member_at`, `closed_at`, `closed_by`)
 *   is written only by an agent of an ingest site;
 * - a custody record names the writer's site and account.
 *
 * couchapp/es5-rules.ts RUN_RULES_ES5 is the line-by-line port; test/unit/design-runs.test.ts keeps
 * the two in agreement.
 */
import { pendingRecord } from './document.js';
import { ISO_DATE, isObject, show } from './invariants.js';
import { appendOnly, sameValue } from './provenance.js';
import { RUN_ID_PREFIX } from './run-document.js';
import type { UserContext } from './roles.js';

type Obj = Record<string, unknown>;

/** What the rules need to know of the writer (core/write-rules.ts Powers). */
export interface RunWriter {
  all: boolean;
  relay: boolean;
  sites: string[];
}

/** The fields of a run document only the ingest site writes. */
export const RUN_CATALOGUE_FIELDS = Object.freeze(['members', 'late_members', 'last_member_at', 'closed_at', 'closed_by']);

function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function runStarted(doc: Obj, runSteps: readonly string[]): boolean {
  for (let i = 0; i < runSteps.length; i++) if (doc[runSteps[i]] !== undefined || pendingRecord(doc, runSteps[i]) !== undefined) return true;
  return false;
}

function memberProblems(name: string, before: unknown, after: unknown): string[] {
  const list = listOf(after);
  const problems: string[] = [];
  for (let i = listOf(before).length; i < list.length; i++) {
    const m = list[i];
    if (!isObject(m) || typeof m.doc_id !== 'string' || typeof m.file !== 'string' || typeof m.sha256 !== 'string' || typeof m.size_in_bytes !== 'number')
      problems.push(`${name} entry ${i} is ${show(m)}, expected { doc_id, file, size_in_bytes, sha256 }`);
  }
  return problems;
}

/** Why the server refuses this write of a run document, beyond the data-document rules; empty when it accepts. */
export function runFieldProblems(
  newDoc: Obj,
  previous: Obj | null,
  user: UserContext,
  p: RunWriter,
  ingestSites: readonly string[],
  runSteps: readonly string[],
): string[] {
  const problems: string[] = [];
  if (typeof newDoc.run_name !== 'string' || newDoc._id !== RUN_ID_PREFIX + newDoc.run_name)
    problems.push(`a run document's _id is ${show(RUN_ID_PREFIX)} and its run_name, not ${show(newDoc._id)}`);
  if (!Array.isArray(newDoc.members)) problems.push(`members is ${show(newDoc.members)}, expected a list`);
  const old = previous === null ? {} : previous;
  problems.push(
    ...appendOnly('members', old.members, newDoc.members),
    ...appendOnly('late_members', old.late_members, newDoc.late_members),
    ...appendOnly('custody', old.custody, newDoc.custody),
    ...memberProblems('members', old.members, newDoc.members),
    ...memberProblems('late_members', old.late_members, newDoc.late_members),
  );
  if (previous !== null && runStarted(previous, runSteps) && listOf(newDoc.members).length > listOf(previous.members).length)
    problems.push('members cannot grow once a run step started: a later file is a late member');
  const once = ['closed_at', 'closed_by'];
  for (let i = 0; i < once.length; i++) {
    if (old[once[i]] !== undefined && !sameValue(old[once[i]], newDoc[once[i]])) problems.push(`${once[i]} cannot change once written`);
  }
  if (newDoc.closed_at !== undefined) {
    if (typeof newDoc.closed_at !== 'string' || !ISO_DATE.test(newDoc.closed_at)) problems.push(`closed_at is ${show(newDoc.closed_at)}, expected an ISO date`);
    if (newDoc.closed_by !== 'quiet' && newDoc.closed_by !== 'marker') problems.push(`closed_by is ${show(newDoc.closed_by)}, expected "quiet" or "marker"`);
  }
  if (p.all || p.relay) return problems;
  const who = show(user.name);
  const changed: string[] = [];
  for (let i = 0; i < RUN_CATALOGUE_FIELDS.length; i++) {
    const field = RUN_CATALOGUE_FIELDS[i];
    if (!sameValue(old[field], newDoc[field])) changed.push(field);
  }
  let ingest = false;
  for (let i = 0; i < ingestSites.length; i++) if (p.sites.indexOf(ingestSites[i]) >= 0) ingest = true;
  if (changed.length > 0 && !ingest) problems.push(`${who} may not write ${changed.join(', ')} of a run document: the ingest site does`);
  const custody = listOf(newDoc.custody);
  for (let i = listOf(old.custody).length; i < custody.length; i++) {
    const c = custody[i];
    if (!isObject(c) || p.sites.indexOf(c.site as string) < 0 || c.account !== user.name)
      problems.push(`custody entry ${i} must name the writer's site and account (${who})`);
  }
  return problems;
}
