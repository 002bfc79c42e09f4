import { MeshError } from '../core/errors.js';

/** Collects every problem of a config, each naming the key, the bad value and the expected form. */
export class Problems {
  readonly list: string[] = [];

  add(key: string, value: unknown, expected: string): void {
    this.list.push(`${key} is ${show(value)}, expected ${expected}`);
  }

  unknownKeys(key: string, object: Record<string, unknown>, allowed: readonly string[]): void {
    for (const name of Object.keys(object)) {
      if (!allowed.includes(name)) this.list.push(`${key ? `${key}.` : ''}${name} is not a known key (known: ${allowed.join(', ')})`);
    }
  }

  throwIfAny(source: string): void {
    if (this.list.length > 0) {
      throw new MeshError('CONFIG_INVALID', `invalid configuration ${source}:\n  - ${this.list.join('\n  - ')}`);
    }
  }
}

export function show(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function isPositiveNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

export function isPositiveInteger(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0;
}

/** CouchDB's rule for database names. */
export const DATABASE_NAME = /^[a-z][a-z0-9_$()+/-]*$/;
export const NAME = /^[a-z][a-z0-9_-]{0,63}$/;

/** The original scripts' tools read `_design/proc`; `original_design` may name it otherwise. */
export const ORIGINAL_DESIGN_DEFAULT = 'proc';

/** The expected form of `original_design`, or undefined when `name` is one: a plain name, never `mesh`'s own. */
export function originalDesignProblem(name: unknown): string | undefined {
  if (typeof name === 'string' && NAME.test(name) && name !== 'mesh') return undefined;
  return `a design document name of lower-case letters, digits, _ and - (default ${JSON.stringify(ORIGINAL_DESIGN_DEFAULT)}), other than "mesh" (CouchMesh's own _design/mesh)`;
}

/** Node's timers take at most 2^31-1 ms; a longer delay silently becomes 1 ms. */
export const MAX_TIMER_S = Math.floor((2 ** 31 - 1) / 1000);

export interface SecondsBounds {
  /** Smallest value accepted; 0 < value when absent. */
  min?: number;
  /** Largest value accepted; MAX_TIMER_S when absent. */
  max?: number;
}

/** The expected form of a number of seconds within `bounds`, for messages. */
export function secondsForm(bounds: SecondsBounds = {}): string {
  const max = bounds.max ?? MAX_TIMER_S;
  const kind = bounds.min === 0 ? 'a number of seconds' : 'a positive number of seconds';
  const low = bounds.min === undefined ? '' : `at least ${bounds.min} and `;
  return `${kind} (a JSON number, not a string), ${low}at most ${max}${max === MAX_TIMER_S ? ' (24.8 days, the longest delay a Node timer takes)' : ''}`;
}

/** Adds a problem unless `value` is a JSON number of seconds within `bounds`; the value is shown as written. */
export function checkSeconds(problems: Problems, key: string, value: unknown, bounds: SecondsBounds = {}): value is number {
  const max = bounds.max ?? MAX_TIMER_S;
  const ok = typeof value === 'number' && Number.isFinite(value) && (bounds.min === undefined ? value > 0 : value >= bounds.min) && value <= max;
  if (!ok) problems.add(key, value, secondsForm(bounds));
  return ok;
}

/** A step's time limit, attempt limit and lease (file and run steps alike), their defaults filled in (3600 s, 3, 120 s), each checked. */
export function stepLimits(problems: Problems, key: string, step: Record<string, unknown>): { timeout_s: number; max_attempts: number; lease_s: number } {
  const timeout = step.timeout_s ?? 3600;
  const attempts = step.max_attempts ?? 3;
  const lease = step.lease_s ?? 120;
  checkSeconds(problems, `${key}.timeout_s`, timeout);
  if (!isPositiveInteger(attempts)) problems.add(`${key}.max_attempts`, attempts, 'a positive integer');
  // A lease is renewed every third of it by a write to the server: under a second it cannot be kept.
  checkSeconds(problems, `${key}.lease_s`, lease, { min: 1 });
  return { timeout_s: Number(timeout), max_attempts: Number(attempts), lease_s: Number(lease) };
}
