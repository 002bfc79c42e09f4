/**
 * The operators' controls: paused steps (agents claim nothing of them; running steps finish) and
 * drained sites (their agents take no new claims). One replicated control document,
 * `mesh:controls`, written by operators (`mesh pause`, `mesh drain`, the status page), read by
 * every agent. Each mark says who set it, when and why; `history` keeps every action, append-only.
 *
 * `controlsProblems` is the server's rule for that document (core/write-rules.ts hooks it in;
 * couchapp/es5-controls.ts is its ES5 port, test/unit/design.test.ts keeps them in agreement).
 */
import { ISO_DATE, isObject, show } from './invariants.js';
import { sameValue } from './provenance.js';
import type { UserContext } from './roles.js';

type Obj = Record<string, unknown>;

export const CONTROLS_ID = 'mesh:controls';
export const CONTROLS_TYPE = 'mesh-controls';
export const CONTROL_ACTIONS = ['pause', 'resume', 'drain', 'undrain'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

/** Who set a pause or a drain, when, and why. */
export interface ControlMark {
  since: string;
  /** `operator/<login>` or `dashboard/<account>`. */
  by: string;
  /** The account that wrote it (null without accounts); the server checks it against the writer. */
  user: string | null;
  why: string;
}

export interface ControlEntry {
  at: string;
  action: ControlAction;
  /** The step (pause, resume) or the site (drain, undrain). */
  target: string;
  by: string;
  user: string | null;
  why: string;
}

export interface OperatorControls {
  _id: typeof CONTROLS_ID;
  _rev?: string;
  type: typeof CONTROLS_TYPE;
  /** Step name → its pause. */
  paused: Record<string, ControlMark>;
  /** Site name → its drain. */
  drained: Record<string, ControlMark>;
  history: ControlEntry[];
}

/** No step paused, no site drained. */
export function noControls(): OperatorControls {
  return { _id: CONTROLS_ID, type: CONTROLS_TYPE, paused: {}, drained: {}, history: [] };
}

/**
 * The controls after one action, or undefined when it changes nothing (pausing a paused step,
 * resuming one that runs): an action repeated by mistake writes nothing. Pure.
 */
export function applyControl(
  current: OperatorControls,
  action: ControlAction,
  target: string,
  who: { by: string; user: string | null; why: string },
  now: Date,
): OperatorControls | undefined {
  const field = action === 'pause' || action === 'resume' ? 'paused' : 'drained';
  const setting = action === 'pause' || action === 'drain';
  const marks = { ...(current[field] ?? {}) };
  if (setting === Object.prototype.hasOwnProperty.call(marks, target)) return undefined;
  const at = now.toISOString();
  if (setting) marks[target] = { since: at, by: who.by, user: who.user, why: who.why };
  else delete marks[target];
  const entry: ControlEntry = { at, action, target, by: who.by, user: who.user, why: who.why };
  return { ...current, [field]: marks, history: [...(Array.isArray(current.history) ? current.history : []), entry] };
}

/** The steps an agent of `site` may claim now: none on a drained site, the unpaused ones otherwise. Pure. */
export function claimableSteps<S extends { name: string }>(steps: readonly S[], site: string, controls: Pick<OperatorControls, 'paused' | 'drained'>): S[] {
  if (isObject(controls.drained) && Object.prototype.hasOwnProperty.call(controls.drained, site)) return [];
  const paused = isObject(controls.paused) ? controls.paused : {};
  return steps.filter((step) => !Object.prototype.hasOwnProperty.call(paused, step.name));
}

/** A stored document as controls; anything else (absent, another shape) is treated as none. */
export function asControls(doc: unknown): OperatorControls | undefined {
  if (!isObject(doc) || doc.type !== CONTROLS_TYPE) return undefined;
  return {
    ...(doc as unknown as OperatorControls),
    paused: isObject(doc.paused) ? (doc.paused as Record<string, ControlMark>) : {},
    drained: isObject(doc.drained) ? (doc.drained as Record<string, ControlMark>) : {},
    history: Array.isArray(doc.history) ? (doc.history as ControlEntry[]) : [],
  };
}

// ---- the server's rule (ported line by line in couchapp/es5-controls.ts) ----

function markProblems(field: string, before: unknown, after: unknown, user: UserContext): string[] {
  const problems: string[] = [];
  if (after === undefined) return problems;
  if (!isObject(after)) return [`${field} is ${show(after)}, expected an object`];
  const old = isObject(before) ? before : {};
  for (const key in after) {
    if (!Object.prototype.hasOwnProperty.call(after, key) || sameValue(old[key], after[key])) continue;
    const mark = after[key];
    if (!isObject(mark)) problems.push(`${field}.${key} is ${show(mark)}, expected an object`);
    else if (mark.user !== user.name) problems.push(`${field}.${key} of account ${show(mark.user)} written by ${show(user.name)}`);
    else if (typeof mark.why !== 'string' || mark.why.length === 0) problems.push(`${field}.${key} says no why`);
  }
  return problems;
}

function entryProblems(entry: unknown, user: UserContext): string[] {
  if (!isObject(entry)) return [`controls history entry ${show(entry)} is not an object`];
  if (entry.user !== user.name) return [`controls history entry of account ${show(entry.user)} written by ${show(user.name)}`];
  if ((CONTROL_ACTIONS as readonly unknown[]).indexOf(entry.action) < 0) return [`controls history action ${show(entry.action)} is unknown`];
  if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at)) return [`controls history entry at is ${show(entry.at)}, expected an ISO date`];
  if (typeof entry.why !== 'string' || entry.why.length === 0) return ['controls history entry says no why'];
  return [];
}

/**
 * Why the server refuses this write of the controls document; empty when it accepts.
 * `trusted`: the relay and the admin party (replicated writes carry other accounts' actions).
 */
export function controlsProblems(newDoc: Obj, previous: Obj | null, user: UserContext, trusted: boolean, operator: boolean): string[] {
  if (newDoc._id !== CONTROLS_ID) return [`${show(CONTROLS_TYPE)} is the type of ${show(CONTROLS_ID)} only`];
  if (!trusted && !operator) return [`${show(user.name)} may not pause steps or drain sites: operators do`];
  if (!Array.isArray(newDoc.history)) return ['controls history is missing'];
  const old = previous !== null && Array.isArray(previous.history) ? previous.history : [];
  if (newDoc.history.length < old.length) return ['controls history entries cannot be removed'];
  for (let i = 0; i < old.length; i++) if (!sameValue(old[i], newDoc.history[i])) return [`controls history entry ${i} cannot change`];
  if (trusted) return [];
  const problems: string[] = [];
  const appended = newDoc.history.slice(old.length);
  for (let i = 0; i < appended.length; i++) problems.push(...entryProblems(appended[i], user));
  const fields = ['paused', 'drained'];
  let changed = false;
  for (let i = 0; i < fields.length; i++) {
    const before = previous === null ? undefined : previous[fields[i]];
    problems.push(...markProblems(fields[i], before, newDoc[fields[i]], user));
    if (!sameValue(before, newDoc[fields[i]])) changed = true;
  }
  if (changed && appended.length === 0) problems.push('paused and drained cannot change without a controls history entry');
  return problems;
}
