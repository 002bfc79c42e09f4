/**
 * The server's verdict on a write, in TypeScript: why validate_doc_update refuses to store
 * `newDoc` over `oldDoc` for the writer `user`; empty when it accepts. The generated function
 * (couchapp/design.ts) runs an ES5 port of this file, core/invariants.ts and core/provenance.ts;
 * test/unit/design.test.ts keeps them in agreement, message for message.
 *
 * Three kinds of document: data documents (`type` = the pipeline's doc_type), control documents
 * (`type` `mesh-…`, `_id` `mesh…`: heartbeats, assignment, audit) and anything else ("foreign",
 * written only by the coordinator's replication or the embedded server's admin party).
 *
 * Who may do what is in core/roles.ts. Every writer, admins included, is held to the status
 * and provenance rules; the coordinator (which carries replicated writes) and the admin party
 * are exempt only from the authorship rules, since a replicated write carries other accounts' work.
 */
import { parseStatus, pendingRecord } from './document.js';
import { editProblems, isObject, show, statusProblems } from './invariants.js';
import { custodyAuthorityProblems, custodyProblems } from './custody-rules.js';
import { appendedEntries, creationProblems, provenanceProblems, sameValue } from './provenance.js';
import { RUN_DOC_TYPE } from './run-document.js';
import { runFieldProblems } from './run-rules.js';
import { CONTROLS_TYPE, controlsProblems } from './operator-controls.js';
import { AGENT_ROLE_PREFIX, COORDINATOR_ROLE, OPERATOR_ROLE, type UserContext } from './roles.js';

type Obj = Record<string, unknown>;

/** The heartbeat documents' type: a control document an agent writes, for its own site. */
export const HEARTBEAT_TYPE = 'mesh-agent';
/** The trigger records' type (store/triggers.ts): how the runs an agent started at another site ended; written for the agent's own site. */
export const TRIGGER_TYPE = 'mesh-trigger';

/** What the rules need to know of the config. */
export interface WritePolicy {
  readonly docType: string;
  readonly steps: readonly string[];
  /** Step → the sites whose agents may run it (their `may_run`). */
  readonly stepSites: Readonly<Record<string, readonly string[]>>;
  /** The sites whose agents catalogue new files. */
  readonly ingestSites: readonly string[];
  /** The run pipeline (`scope: "run"` steps, their sites in stepSites); absent or empty: run documents are foreign. */
  readonly runSteps?: readonly string[];
}

interface Powers {
  /** The embedded server's admin party: trusted with every role. */
  all: boolean;
  /** Carries replicated writes: exempt from authorship, not from provenance. */
  relay: boolean;
  coordinator: boolean;
  operator: boolean;
  sites: string[];
}

function has(list: readonly unknown[] | undefined, value: unknown): boolean {
  return Array.isArray(list) && list.indexOf(value) >= 0;
}

function powersOf(user: UserContext): Powers {
  const roles = isObject(user) && Array.isArray(user.roles) ? user.roles : [];
  const name = isObject(user) ? user.name : null;
  const admin = has(roles, '_admin');
  const sites: string[] = [];
  for (let i = 0; i < roles.length; i++) {
    const role = roles[i];
    if (typeof role === 'string' && role.indexOf(AGENT_ROLE_PREFIX) === 0) sites.push(role.slice(AGENT_ROLE_PREFIX.length));
  }
  const relay = has(roles, COORDINATOR_ROLE);
  return { all: admin && name === null, relay, coordinator: relay || admin, operator: admin || has(roles, OPERATOR_ROLE), sites };
}

function kindOf(doc: Obj, policy: WritePolicy): 'data' | 'control' | 'foreign' {
  if (doc.type === policy.docType) return 'data';
  if (typeof doc.type === 'string' && doc.type.indexOf('mesh-') === 0 && typeof doc._id === 'string' && doc._id.indexOf('mesh') === 0) return 'control';
  return 'foreign';
}

/** The site in an entry's `by` (`lyon/agent-7` → `lyon`). */
function siteOf(by: unknown): string | null {
  if (typeof by !== 'string') return null;
  const slash = by.indexOf('/');
  return slash > 0 ? by.slice(0, slash) : null;
}

/** The step a `<step> queued` / `<step> in progress` status claims, null for any other. */
function claimedStep(status: unknown, steps: readonly string[]): string | null {
  const parsed = parseStatus(status, steps);
  return parsed && (parsed.kind === 'queued' || parsed.kind === 'in_progress') ? (parsed.step as string) : null;
}

/** What the writer of one history entry must be allowed to do. */
function entryProblems(entry: Obj, user: UserContext, p: Powers, policy: WritePolicy): string[] {
  const who = show(user.name);
  const problems: string[] = [];
  if (entry.user !== user.name) problems.push(`history entry of account ${show(entry.user)} written by ${who}`);
  const site = siteOf(entry.by);
  if (entry.from === null) {
    if (!(has(p.sites, site) && has(policy.ingestSites, site))) problems.push(`${who} may not catalogue files as ${show(entry.by)}`);
    return problems;
  }
  if (entry.reprocess !== undefined) {
    if (!p.operator) problems.push(`${who} may not reprocess ${show(entry.reprocess)}: operators do`);
    return problems;
  }
  if (entry.to === 'bad') {
    if (!p.operator && p.sites.length === 0) problems.push(`${who} may not mark documents bad`);
    return problems;
  }
  const from = parseStatus(entry.from, policy.steps);
  if (from !== undefined && from.kind === 'failed') {
    if (entry.to !== entry.from && !p.operator) problems.push(`${who} may not retry ${from.step}: operators do`);
    return problems;
  }
  const step = from?.step ?? parseStatus(entry.to, policy.steps)?.step;
  if (step !== undefined && !(has(p.sites, site) && has(policy.stepSites[step], site))) problems.push(`${who} may not run ${step} as ${show(entry.by)}`);
  return problems;
}

/** Authorship: the writer's roles against what the write does. Not applied to the relay and the admin party. */
function authorityProblems(newDoc: Obj, previous: Obj | null, user: UserContext, p: Powers, policy: WritePolicy): string[] {
  const who = show(user.name);
  if (!p.operator && !p.coordinator && p.sites.length === 0) return [`${who} may not write: no mesh role allows it`];
  const problems: string[] = [];
  const steps = policy.steps;
  if (previous === null) {
    let records = newDoc.pending === undefined ? 0 : 1;
    for (let i = 0; i < steps.length; i++) if (newDoc[steps[i]] !== undefined) records++;
    if (newDoc.status !== 'closed' || records > 0) problems.push('a new document starts closed, with no step record');
  }
  const entries = appendedEntries(previous, newDoc);
  for (let i = 0; i < entries.length; i++) {
    if (isObject(entries[i])) problems.push(...entryProblems(entries[i] as Obj, user, p, policy));
  }
  const claimedBefore = previous === null ? null : claimedStep(previous.status, steps);
  const claimedNow = claimedStep(newDoc.status, steps);
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i];
    const before = previous === null ? undefined : pendingRecord(previous, step);
    const after = pendingRecord(newDoc, step);
    const done = newDoc[step];
    if (isObject(done) && !sameValue(previous === null ? undefined : previous[step], done)) {
      if (!(claimedBefore === step && before !== undefined && before.account === user.name))
        problems.push(`${step} may be recorded done only by the account that claimed it`);
    }
    if (after === undefined || sameValue(before, after)) continue;
    if (claimedNow === step) {
      if (after.account !== user.name) problems.push(`pending.${step}.account is ${show(after.account)} but the writer is ${who}`);
      else if (!(has(p.sites, after.site) && has(policy.stepSites[step], after.site)))
        problems.push(`pending.${step}.site is ${show(after.site)}: ${who} may not run ${step} there`);
    } else if (entries.length === 0) {
      problems.push(`pending.${step} cannot change without a status change`);
    }
  }
  const jobsBefore = previous !== null && Array.isArray(previous.batchJob) ? previous.batchJob.length : 0;
  if (Array.isArray(newDoc.batchJob) && newDoc.batchJob.length > jobsBefore && p.sites.length === 0)
    problems.push(`${who} may not record batch jobs: agents do`);
  problems.push(...custodyAuthorityProblems(previous, newDoc, user.name, p.sites, policy.ingestSites));
  return problems;
}

function controlProblems(newDoc: Obj, previous: Obj | null, user: UserContext, p: Powers): string[] {
  if (newDoc.type === CONTROLS_TYPE) return controlsProblems(newDoc, previous, user, p.all || p.relay, p.operator);
  if (p.all || p.relay) return [];
  if (newDoc.type === HEARTBEAT_TYPE || newDoc.type === TRIGGER_TYPE) {
    if (has(p.sites, newDoc.site) && (previous === null || previous.site === newDoc.site)) return [];
    return [`${show(user.name)} may not write the ${newDoc.type === HEARTBEAT_TYPE ? 'heartbeat' : 'trigger record'} of site ${show(newDoc.site)}`];
  }
  if (p.coordinator) return [];
  return [`${show(user.name)} may not write ${show(newDoc.type)} documents: the coordinator does`];
}

/** Why the server refuses this write; empty when it accepts. */
export function writeProblems(newDoc: unknown, oldDoc: unknown, user: UserContext, policy: WritePolicy): string[] {
  if (!isObject(newDoc)) return ['not a JSON object'];
  if (typeof newDoc._id === 'string' && newDoc._id.indexOf('_design/') === 0) return [];
  const p = powersOf(user);
  const previous = isObject(oldDoc) && oldDoc._deleted !== true ? oldDoc : null;
  if (newDoc._deleted === true) {
    return p.all || p.coordinator || p.operator ? [] : [`${show(user.name)} may not delete documents: the coordinator and operators do`];
  }
  if (previous !== null && previous.type !== newDoc.type) return [`type cannot change from ${show(previous.type)} to ${show(newDoc.type)}`];
  const kind = kindOf(newDoc, policy);
  // A run document is the data document of the run pipeline (core/run-rules.ts).
  if (kind === 'foreign' && newDoc.type === RUN_DOC_TYPE && policy.runSteps !== undefined && policy.runSteps.length > 0) {
    const runPolicy = { ...policy, docType: RUN_DOC_TYPE, steps: policy.runSteps, runSteps: undefined };
    return writeProblems(newDoc, oldDoc, user, runPolicy).concat(runFieldProblems(newDoc, previous, user, p, policy.ingestSites, policy.runSteps));
  }
  if (kind === 'foreign') {
    return p.all || p.relay ? [] : [`${show(user.name)} may not write documents other than ${show(policy.docType)} and mesh control documents`];
  }
  if (kind === 'control') return controlProblems(newDoc, previous, user, p);
  const problems = statusProblems(newDoc, policy.steps);
  if (previous === null) problems.push(...creationProblems(newDoc, policy.steps));
  else problems.push(...editProblems(previous, newDoc, policy.steps), ...provenanceProblems(previous, newDoc, policy.steps));
  problems.push(...custodyProblems(previous, newDoc));
  if (p.all || p.relay) return problems;
  return problems.concat(authorityProblems(newDoc, previous, user, p, policy));
}
