/**
 * The operators' pauses and drains (core/operator-controls.ts): checked against the config, then
 * written to one server's `mesh:controls`, from which replication carries them to every
 * server. Behind `mesh pause|resume|drain|undrain` and the status page's buttons.
 */
import type { MeshConfig } from '../config/types.js';
import { MeshError } from '../core/errors.js';
import type { ControlAction, OperatorControls } from '../core/operator-controls.js';
import { writeControl } from '../store/controls.js';
import type { Database } from '../store/database.js';

/** The site whose server operators write the controls to by default: the coordinator's (one writer's server, so no replication conflict). */
export function controlsSite(config: MeshConfig): string {
  return config.coordinator.site;
}

/** Throws BAD_INPUT unless `target` is a step (pause, resume) or a site (drain, undrain) of the config. */
export function checkControlTarget(config: MeshConfig, action: ControlAction, target: string): void {
  if (action === 'pause' || action === 'resume') {
    const steps = config.steps.map((s) => s.name);
    if (!steps.includes(target)) throw new MeshError('BAD_INPUT', `step ${target} is not in the pipeline (${steps.join(', ')})`);
  } else {
    const sites = Object.keys(config.sites);
    if (!sites.includes(target)) throw new MeshError('BAD_INPUT', `site ${target} is not in the config (${sites.join(', ')})`);
  }
}

export async function setControl(
  config: MeshConfig,
  db: Database,
  action: ControlAction,
  target: string,
  who: { by: string; why: string },
  now = new Date(),
): Promise<{ changed: boolean; controls: OperatorControls }> {
  checkControlTarget(config, action, target);
  if (who.why.trim().length === 0) throw new MeshError('BAD_INPUT', `${action} needs a why: it is kept with who and when`);
  return writeControl(db, action, target, who, now);
}
