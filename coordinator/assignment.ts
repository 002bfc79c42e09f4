/**
 * What the coordinator checks before it writes the assignment (store/assignment.ts): that each
 * step goes to a site that may run it.
 */
import type { MeshConfig } from '../config/types.js';
import { MeshError } from '../core/errors.js';
import { type Database } from '../store/database.js';
import { assignmentFromConfig, writeAssignment } from '../store/assignment.js';

/** What is wrong with giving each step to its configured site: a site whose non-empty `may_run` does not list the step. */
export function assignmentProblems(config: Pick<MeshConfig, 'sites' | 'steps'>, steps: Record<string, string> = assignmentFromConfig(config)): string[] {
  const problems: string[] = [];
  for (const [step, siteName] of Object.entries(steps)) {
    const site = config.sites[siteName];
    if (!config.steps.some((s) => s.name === step)) problems.push(`step ${step} is not in the pipeline`);
    if (!site) problems.push(`step ${step} is assigned to ${siteName}, which is not a site of the mesh`);
    else if (site.may_run.length > 0 && !site.may_run.includes(step))
      problems.push(`step ${step} is assigned to ${siteName}, whose may_run lists only ${site.may_run.join(', ')}`);
  }
  return problems;
}

/** Throws CONFIG_INVALID when a step is assigned to a site that may not run it. */
export function assertAssignable(config: Pick<MeshConfig, 'sites' | 'steps' | 'source'>, steps?: Record<string, string>): void {
  const problems = assignmentProblems(config, steps);
  if (problems.length > 0)
    throw new MeshError('CONFIG_INVALID', `cannot assign the steps (${config.source}): ${problems.join('; ')}; change the steps' site or the site's may_run`);
}

/** Writes the config's assignment (each step to its `site`) once it is checked; nothing when it is already stored. */
export function assignFromConfig(db: Database, config: MeshConfig, by: string, now = new Date()): Promise<{ changed: boolean; rev: string }> {
  const steps = assignmentFromConfig(config);
  assertAssignable(config, steps);
  return writeAssignment(db, steps, by, now);
}
