/**
 * What an agent does with a candidate document, decided without I/O: claim one of its steps
 * (or take over a claim whose lease ran out), record why it cannot run, or leave it alone.
 */
import type { MeshConfig, StepConfig } from '../config/types.js';
import { type DaqDocument, parseStatus, stepRecord } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { handlingProblems } from '../core/invariants.js';
import { countedAttempts, leaseExpired, readyFor } from '../core/state.js';
import { templateVars } from './command.js';
import { isConfigurationFault } from './config-fault.js';

export type ClaimDecision =
  /** Nothing of ours to do on it (not ready, another site's, claimed and alive). */
  | { kind: 'none' }
  /** Malformed, or a status its records contradict: logged once per revision, never touched. */
  | { kind: 'skip'; reason: string }
  /** Ready, but its attempts already reach `max_attempts` (the limit lowered since): record `<step> failed`. */
  | { kind: 'exhaust'; step: StepConfig }
  /** A lapsed claim whose attempts are used up: no takeover, the claim expires. */
  | { kind: 'expire'; step: StepConfig }
  /** The document's own fault (its fields cannot make a command): terminal `bad`. */
  | { kind: 'mark_bad'; reason: string }
  | { kind: 'claim'; step: StepConfig; reclaim: boolean };

export function decideClaim(doc: DaqDocument, owned: readonly StepConfig[], config: Pick<MeshConfig, 'steps'>, now: Date): ClaimDecision {
  const stepNames = config.steps.map((s) => s.name);
  const problems = handlingProblems(doc, stepNames);
  if (problems.length > 0) return { kind: 'skip', reason: problems.join('; ') };
  const ours = (name: string | undefined) => owned.find((s) => s.name === name);
  const current = parseStatus(doc.status, stepNames);
  let step = ours(readyFor(doc, config, now));
  let reclaim = false;
  if (
    !step &&
    current &&
    (current.kind === 'in_progress' || current.kind === 'queued') &&
    ours(current.step) &&
    leaseExpired(stepRecord(doc, current.step as string), now)
  ) {
    step = ours(current.step);
    reclaim = true;
  }
  if (!step) return { kind: 'none' };
  const record = stepRecord(doc, step.name);
  if (!reclaim && countedAttempts(record) >= step.max_attempts) return { kind: 'exhaust', step };
  if (reclaim && (record?.attempts ?? 0) >= step.max_attempts) return { kind: 'expire', step };
  try {
    templateVars(doc, step, config.steps[stepNames.indexOf(step.name) - 1]);
  } catch (error) {
    // Only the document's own fault marks it bad (terminal); a configuration fault is claimed
    // like any step, which then records it as `<step> failed` (see config-fault.ts).
    if (!isConfigurationFault(error)) return { kind: 'mark_bad', reason: `refused: ${errorMessage(error)}` };
  }
  return { kind: 'claim', step, reclaim };
}
