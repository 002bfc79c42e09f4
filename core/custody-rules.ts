/**
 * The server's rules for custody and purge records (core/custody.ts), hooked into
 * core/write-rules.ts; their ES5 port is CUSTODY_RULES_ES5 in couchapp/es5-rules.ts
 * (test/unit/design.test.ts keeps the two in agreement, message for message).
 *
 * Whoever writes, by whatever path: `custody[]` is append-only and each record has its shape;
 * `purged`, once written, never changes nor goes. Authorship (not applied to the relay, which
 * carries replicated records, nor to the admin party): an appended custody record names one of
 * the writer's agent sites and the writer's account (a site vouches only for its own copies);
 * `purged` is written by an agent of the ingest site, in its own name, for that site.
 */
import { isObject, show } from './invariants.js';
import { appendOnly, sameValue } from './provenance.js';

type Obj = Record<string, unknown>;

const SHA256 = /^[0-9a-f]{64}$/;

function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** What is wrong with one custody record's shape; empty when it is one. */
function custodyRecordProblems(record: unknown, index: number): string[] {
  if (!isObject(record)) return [`custody entry ${index} is ${show(record)}, expected a record object`];
  const problems: string[] = [];
  if (typeof record.site !== 'string' || record.site.length === 0) problems.push(`custody entry ${index} site is ${show(record.site)}`);
  if (typeof record.step !== 'string' || record.step.length === 0) problems.push(`custody entry ${index} step is ${show(record.step)}`);
  if (typeof record.sha256 !== 'string' || !SHA256.test(record.sha256))
    problems.push(`custody entry ${index} sha256 is ${show(record.sha256)}, expected 64 hex digits`);
  if (typeof record.size_in_bytes !== 'number' || record.size_in_bytes < 0 || record.size_in_bytes % 1 !== 0)
    problems.push(`custody entry ${index} size_in_bytes is ${show(record.size_in_bytes)}`);
  return problems;
}

/** What no write may do to the custody and purge records (`previous` null: a new document). */
export function custodyProblems(previous: Obj | null, newDoc: Obj): string[] {
  if (newDoc.custody !== undefined && !Array.isArray(newDoc.custody)) return [`custody is ${show(newDoc.custody)}, expected a list of records`];
  const problems = previous === null ? [] : appendOnly('custody', previous.custody, newDoc.custody);
  if (problems.length > 0) return problems;
  const list = listOf(newDoc.custody);
  for (let i = previous === null ? 0 : listOf(previous.custody).length; i < list.length; i++) problems.push(...custodyRecordProblems(list[i], i));
  if (previous !== null && previous.purged !== undefined && !sameValue(previous.purged, newDoc.purged))
    problems.push('purged is written once and cannot change');
  if (newDoc.purged !== undefined && !isObject(newDoc.purged)) problems.push(`purged is ${show(newDoc.purged)}, expected a record object`);
  return problems;
}

function has(list: readonly unknown[], value: unknown): boolean {
  return list.indexOf(value) >= 0;
}

/** Who may append custody records and write `purged`: `sites` are the writer's agent sites. */
export function custodyAuthorityProblems(
  previous: Obj | null,
  newDoc: Obj,
  name: string | null,
  sites: readonly string[],
  ingestSites: readonly string[],
): string[] {
  const who = show(name);
  const problems: string[] = [];
  const list = listOf(newDoc.custody);
  for (let i = previous === null ? 0 : listOf(previous.custody).length; i < list.length; i++) {
    const record = list[i];
    if (!isObject(record)) continue;
    if (!has(sites, record.site)) problems.push(`${who} may not record custody for site ${show(record.site)}: its agents do`);
    else if (record.account !== name) problems.push(`custody entry ${i} of account ${show(record.account)} written by ${who}`);
  }
  const purged = newDoc.purged;
  if (isObject(purged) && (previous === null || previous.purged === undefined)) {
    if (!(has(sites, purged.site) && has(ingestSites, purged.site)))
      problems.push(`${who} may not record a purge at ${show(purged.site)}: the agents of the ingest site do`);
    else if (purged.user !== name) problems.push(`purged.user is ${show(purged.user)} but the writer is ${who}`);
  }
  return problems;
}
