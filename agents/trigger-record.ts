/**
 * The triggering side's account of the runs it starts at another site (store/triggers.ts): after
 * each run, one compare-and-set of the pair's trigger record, in the background (a slow or
 * unreachable server never delays the next run), one write in flight at a time, the newest
 * outcome last. What a run printed is reduced to one reason: the last error line it wrote (its
 * `mesh: …` failure line, else its last pino error, else its last warning).
 */
import { errorMessage } from '../core/errors.js';
import { type Logger, scrubUrl } from '../core/log.js';
import type { Database } from '../store/database.js';
import { type RunOutcome, type TriggerRecord, triggerRecordId, writeTriggerRecord } from '../store/triggers.js';
import { TRIGGER_TYPE } from '../core/write-rules.js';

export type { RunOutcome };

/** A reason is kept to this many characters (it goes into a document, the page and the alert hook). */
const REASON_MAX = 300;

/** The next record of a pair after `outcome`; pure. */
export function nextRecord(
  current: TriggerRecord | undefined,
  who: { site: string; target: string; agent: string; host: string },
  outcome: RunOutcome,
  now: Date,
): TriggerRecord {
  const failing = outcome.ok
    ? undefined
    : {
        runs: (current?.failing?.runs ?? 0) + 1,
        since: current?.failing?.since ?? outcome.started,
        reason: outcome.reason ?? outcome.how,
      };
  return {
    _id: triggerRecordId(who.site, who.target),
    type: TRIGGER_TYPE,
    site: who.site,
    target: who.target,
    agent: who.agent,
    host: who.host,
    updated: now.toISOString(),
    runs: (current?.runs ?? 0) + 1,
    failures: (current?.failures ?? 0) + (outcome.ok ? 0 : 1),
    ...(failing ? { failing } : {}),
    last: outcome,
  };
}

/** Keeps, from a run's output lines, the one that best says why it ended badly. */
export class RunWords {
  private failureLine: string | undefined;
  private error: string | undefined;
  private warning: string | undefined;

  /** A plain-text line (`mesh: …` is the failure line every mesh command prints last). */
  text(line: string): void {
    const trimmed = line.trim();
    if (trimmed.startsWith('mesh: ')) this.failureLine = trimmed.slice('mesh: '.length);
  }

  /** A pino line, by level (40 warn, 50 error, 60 fatal), with its message and its `err` when it has one. */
  logged(level: number, message: string, err?: unknown): void {
    // pino writes an error as { type, message, stack }, a string as it is.
    const cause = typeof err === 'string' ? err : typeof (err as { message?: unknown })?.message === 'string' ? (err as { message: string }).message : '';
    const words = cause && !message.includes(cause) ? `${message}: ${cause}` : message;
    if (level >= 50) this.error = words;
    else if (level >= 40) this.warning = words;
  }

  reason(): string | undefined {
    const words = this.failureLine ?? this.error ?? this.warning;
    return words === undefined ? undefined : shorten(scrubUrl(words));
  }
}

export function shorten(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > REASON_MAX ? `${one.slice(0, REASON_MAX - 1)}…` : one;
}

/** What the triggers hand their outcomes to (agents/trigger.ts). */
export interface RunRecorder {
  record(target: string, outcome: RunOutcome): void;
  /** Resolves once every record handed over so far is written (or failed to be). */
  idle(): Promise<void>;
}

/** Writes the trigger records of `site`'s agent `agent` to `db` (its own server). */
export class TriggerRecorder implements RunRecorder {
  private readonly queue = new Map<string, RunOutcome[]>();
  private writing: Promise<void> | undefined;

  constructor(
    private readonly db: Database,
    private readonly who: { site: string; agent: string; host: string },
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  record(target: string, outcome: RunOutcome): void {
    const waiting = this.queue.get(target) ?? [];
    waiting.push(outcome);
    this.queue.set(target, waiting);
    this.writing ??= this.drain().finally(() => (this.writing = undefined));
  }

  async idle(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    while (this.queue.size > 0) {
      const [target, outcomes] = this.queue.entries().next().value as [string, RunOutcome[]];
      this.queue.delete(target);
      try {
        const result = await writeTriggerRecord(
          this.db,
          this.who.site,
          target,
          (current) =>
            outcomes.reduce<TriggerRecord | undefined>(
              (record, outcome) => nextRecord(record, { ...this.who, target }, outcome, this.now()),
              current,
            ) as TriggerRecord,
        );
        if (result.kind !== 'written') this.logger.warn({ target, result: result.kind }, `trigger record of ${target} not written (${result.kind})`);
      } catch (error) {
        this.logger.warn({ target }, `trigger record of ${target} not written: ${errorMessage(error)}`);
      }
    }
  }
}
