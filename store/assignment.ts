/**
 * The step → site assignment: one replicated document, `mesh:assignment`, written by the
 * coordinator from the config (each step's `site`) on its own server only (one writer, so no
 * replication conflict), read by agents, who run only the steps their site owns.
 */
import { isDeepStrictEqual } from 'node:util';
import type { MeshConfig, StepConfig } from '../config/types.js';
import type { Database } from './database.js';
import { update, writtenOrThrow } from './update.js';

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

export function assignmentFromConfig(config: Pick<MeshConfig, 'steps'>): Record<string, string> {
  return Object.fromEntries(config.steps.map((s) => [s.name, s.site]));
}

/** The assignment document, or undefined when the coordinator has not written one yet (or it is not an assignment). */
export async function readAssignment(db: Database): Promise<Assignment | undefined> {
  const doc = await db.get<Assignment>(ASSIGNMENT_ID);
  return doc?.type === ASSIGNMENT_TYPE && doc.steps && typeof doc.steps === 'object' ? doc : undefined;
}

/**
 * Writes `steps` unless the stored assignment already gives every step to the same site
 * (then nothing is written: `updated` and `by` tell when it last changed).
 */
export async function writeAssignment(db: Database, steps: Record<string, string>, by: string, now = new Date()): Promise<{ changed: boolean; rev: string }> {
  const result = await update<Assignment>(
    db,
    ASSIGNMENT_ID,
    (current) =>
      current?.type === ASSIGNMENT_TYPE && isDeepStrictEqual(current.steps, steps)
        ? { keep: true }
        : { write: { _id: ASSIGNMENT_ID, type: ASSIGNMENT_TYPE, steps, updated: now.toISOString(), by } },
    { create: true },
  );
  const doc = writtenOrThrow(result, ASSIGNMENT_ID);
  return { changed: result.kind === 'written' && result.changed, rev: doc._rev as string };
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
