/**
 * The operators' pauses and drains (core/operator-controls.ts): checked against the config, then
 * written to one server's `mesh:controls`, from which replication carries them to every
 * server. Behind `mesh pause|resume|drain|undrain` and the status page's buttons.
 */
import type { MeshConfig } from '../config/types.js';
import { MeshError } from '../core/errors.js';
import type { ControlAction, ControlMark, OperatorControls } from '../core/operator-controls.js';
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

/** A pause or a drain as `mesh status` and the page show it: the mark, and the servers that hold it. */
export interface ControlShown extends ControlMark {
  /** The step paused or the site drained. */
  target: string;
  /** The servers whose copy of mesh:controls holds it (fewer than all: replication has not carried it yet). */
  servers: string[];
}

export interface ControlsStatus {
  paused: ControlShown[];
  drained: ControlShown[];
}

/** Every pause and drain found on any server (the newest mark of each), with the servers that hold it. Pure. */
export function controlsAcross(perServer: ReadonlyArray<{ server: string; controls: OperatorControls | undefined }>): ControlsStatus {
  const gather = (field: 'paused' | 'drained'): ControlShown[] => {
    const shown = new Map<string, ControlShown>();
    for (const { server, controls } of perServer) {
      for (const [target, mark] of Object.entries(controls?.[field] ?? {})) {
        const known = shown.get(target);
        const servers = [...(known?.servers ?? []), server];
        shown.set(target, !known || mark.since > known.since ? { ...mark, target, servers } : { ...known, servers });
      }
    }
    return [...shown.values()].sort((a, b) => a.target.localeCompare(b.target));
  };
  return { paused: gather('paused'), drained: gather('drained') };
}
