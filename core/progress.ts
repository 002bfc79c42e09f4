/**
 * A file's state in words, as a shift crew reads it on the status page and in `mesh status`:
 * "complete" (every step done) is not "good" (one step done, waiting for the next); a failed
 * attempt that will be tried again says when. Times in one zone, UTC, labelled. Pure, no clock.
 */
import { type DaqDocument, parseStatus, stepRecord } from './document.js';
import { type PipelineSteps, countedAttempts, nextStep } from './state.js';

export type ProgressKind = 'complete' | 'waiting' | 'retrying' | 'queued' | 'running' | 'failed' | 'bad' | 'unknown';

export interface Progress {
  kind: ProgressKind;
  /** The step the words are about (the next one, or the one claimed or failed). */
  step?: string;
  text: string;
}

/** `08:31 UTC`, with the date in front when it is not `now`'s day (UTC). */
export function utcClock(at: Date | string, now: Date): string {
  const date = typeof at === 'string' ? new Date(at) : at;
  if (!Number.isFinite(date.getTime())) return String(at);
  const iso = date.toISOString();
  const day = iso.slice(0, 10) === now.toISOString().slice(0, 10) ? '' : `${iso.slice(0, 10)} `;
  return `${day}${iso.slice(11, 16)} UTC`;
}

/** `45 s`, `12 min`, `5 h`, `3 d`: one unit, for a summary line. */
export function shortAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

function limitOf(pipeline: PipelineSteps, step: string): number | undefined {
  return pipeline.steps.find((s) => s.name === step)?.max_attempts;
}

/** `attempt 2 of 3`: the attempts that count against the step's limit. */
function attemptText(counted: number, limit: number | undefined): string {
  return limit === undefined ? `attempt ${counted}` : `attempt ${counted} of ${limit}`;
}

export function describeProgress(doc: DaqDocument, pipeline: PipelineSteps, now: Date): Progress {
  const parsed = parseStatus(
    doc.status,
    pipeline.steps.map((s) => s.name),
  );
  if (!parsed) return { kind: 'unknown', text: `status "${String(doc.status)}" is unknown to this pipeline` };
  if (parsed.kind === 'bad') return { kind: 'bad', text: 'marked bad (no step runs on it)' };
  if (parsed.kind === 'closed' || parsed.kind === 'good') {
    const step = nextStep(doc, pipeline);
    if (step === undefined) return { kind: 'complete', text: 'complete: every step done' };
    const record = stepRecord(doc, step);
    if (record?.ok === false && record.retry_after) {
      const due = Date.parse(record.retry_after);
      const when = Number.isFinite(due) && due > now.getTime() ? `next at ${utcClock(record.retry_after, now)}` : 'due now';
      return { kind: 'retrying', step, text: `retrying ${step} (${attemptText(countedAttempts(record) + 1, limitOf(pipeline, step))}, ${when})` };
    }
    return { kind: 'waiting', step, text: parsed.kind === 'closed' ? `waiting for ${step}` : `${previous(pipeline, step)} done, waiting for ${step}` };
  }
  const step = parsed.step as string;
  const record = stepRecord(doc, step);
  const attempt = attemptText(countedAttempts(record), limitOf(pipeline, step));
  const by = record?.site && record.agent ? ` by ${record.site}/${record.agent}` : '';
  if (parsed.kind === 'queued') return { kind: 'queued', step, text: `${step} queued${by} (${attempt})` };
  if (parsed.kind === 'in_progress') return { kind: 'running', step, text: `${step} running${by} (${attempt})` };
  return { kind: 'failed', step, text: `${step} failed (${attempt})${record?.reason ? `: ${record.reason}` : ''}` };
}

function previous(pipeline: PipelineSteps, step: string): string {
  const index = pipeline.steps.findIndex((s) => s.name === step);
  return index > 0 ? pipeline.steps[index - 1].name : 'previous step';
}
