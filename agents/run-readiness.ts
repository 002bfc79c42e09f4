/** Run work a site could take now, without an agent: what wakes a site that cannot stay up. */
import type { MeshConfig } from '../config/types.js';
import { membersNotDone, runReadyFor } from '../core/run-document.js';
import type { Database } from '../store/database.js';
import { documentsById, runsToDo } from '../store/runs.js';

/**
 * Whether a run step of `site` could be claimed now (the run ready, every member done): what
 * wakes a site whose agents cannot stay up (agents/trigger.ts), as ready file work does.
 */
export async function runWorkReady(db: Database, config: MeshConfig, site: string, now: Date): Promise<boolean> {
  const pipeline = { steps: config.run_steps ?? [] };
  const steps = pipeline.steps.filter((s) => s.site === site);
  if (steps.length === 0) return false;
  for (const doc of await runsToDo(db, 20)) {
    const step = steps.find((s) => s.name === runReadyFor(doc, pipeline, now));
    if (!step) continue;
    const members = await documentsById(
      db,
      doc.members.map((m) => m.doc_id),
    );
    if (membersNotDone(doc.members, members, step.after ?? '').length === 0) return true;
  }
  return false;
}
