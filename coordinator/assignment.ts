/**
 * The step → site assignment: one replicated document, `mesh:assignment`, written by the
 * coordinator from the config (each step's `site`) on its own server only (one writer, so no
 * replication conflict), read by agents, who run only the steps their site owns.
 */
import { isDeepStrictEqual } from 'node:util';
import type { MeshConfig, StepConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import { MeshError, isMeshError } from '../core/errors.js';

export const ASSIGNMENT_ID = 'mesh:assignment';
export const ASSIGNMENT_TYPE = 'mesh-assignment';

export interface Assignment {
  _id: typeof ASSIGNMENT_ID;
  _rev?: string;
  type: typeof ASSIGNMENT_TYPE;
  /** Step name → the site that owns it. */
  steps: Record<string, string>;
  updated: string;
  /** Who wrote it, e.g. `coordinator/modane`. */
  by: string;
}

/** What is wrong with giving each step to its configured site: a site whose non-empty `may_run` does not list the step. */
export function assignmentProblems(config: Pick<MeshConfig, 'sites' | 'steps'>, steps: Record<string, string> = assignmentFromConfig(config)): string[] {
  const problems: string[] = [];
  for (const [step, siteName] of Object.entries(steps)) {
    const site = config.sites[siteName];
    if (!config.steps.some((s) => s.name === step)) problems.push(`step ${step} is not in the pipeline`);
    if (!site) problems.push(`step ${step} is assigned to ${siteName}, which is not a site of the mesh`);
    else if (site.may_run.length > 0 && !site.may_run.includes(step)) problems.push(`step ${step} is assigned to ${siteName}, whose may_run lists only ${site.may_run.join(', ')}`);
  }
  return problems;
}

/** Throws CONFIG_INVALID when a step is assigned to a site that may not run it. */
export function assertAssignable(config: Pick<MeshConfig, 'sites' | 'steps' | 'source'>, steps?: Record<string, string>): void {
  const problems = assignmentProblems(config, steps);
  if (problems.length > 0) throw new MeshError('CONFIG_INVALID', `cannot assign the steps (${config.source}): ${problems.join('; ')}; change the steps' site or the site's may_run`);
}

export function assignmentFromConfig(config: Pick<MeshConfig, 'steps'>): Record<string, string> {
  return Object.fromEntries(config.steps.map((s) => [s.name, s.site]));
}

/** The assignment document, or undefined when the coordinator has not written one yet (or it is not an assignment). */
export async function readAssignment(db: Database): Promise<Assignment | undefined> {
  const doc = await db.get<Assignment>(ASSIGNMENT_ID);
  return doc?.type === ASSIGNMENT_TYPE && doc.steps && typeof doc.steps === 'object' ? doc : undefined;
}

/**
 * Writes the assignment unless the stored one already gives every step to the same site
 * (then nothing is written: `updated` and `by` tell when it last changed).
 */
export async function writeAssignment(db: Database, config: MeshConfig, by: string, now = new Date()): Promise<{ changed: boolean; rev: string }> {
  const steps = assignmentFromConfig(config);
  assertAssignable(config, steps);
  for (let attempt = 1; ; attempt++) {
    const current = await db.get<Assignment>(ASSIGNMENT_ID);
    if (current && current.type === ASSIGNMENT_TYPE && isDeepStrictEqual(current.steps, steps)) return { changed: false, rev: current._rev as string };
    const doc: Assignment = { _id: ASSIGNMENT_ID, ...(current?._rev ? { _rev: current._rev } : {}), type: ASSIGNMENT_TYPE, steps, updated: now.toISOString(), by };
    try {
      return { changed: true, rev: await db.put({ ...doc }) };
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT') || attempt >= 3) throw error;
    }
  }
}

/**
 * The steps `site` may run now, in pipeline order: those the assignment gives it (the config's
 * `site` for a step the assignment does not name, or with no assignment at all), never one its
 * `may_run` excludes. Pure.
 */
export function stepsOwnedBy(site: string, assignment: Pick<Assignment, 'steps'> | undefined, config: Pick<MeshConfig, 'sites' | 'steps'>): StepConfig[] {
  const profile = config.sites[site];
  if (!profile) return [];
  return config.steps.filter((step) => {
    const owner = assignment?.steps?.[step.name] ?? step.site;
    return owner === site && (profile.may_run.length === 0 || profile.may_run.includes(step.name));
  });
}
