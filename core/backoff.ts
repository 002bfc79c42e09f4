export interface BackoffPolicy {
  /** Delay before the second attempt, in ms. */
  baseMs: number;
  /** Upper bound of any delay, in ms. */
  capMs: number;
  /** Fraction of the delay that is randomised, 0..1. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ baseMs: 500, capMs: 30_000, jitter: 0.5 });

/**
 * Exponential backoff with jitter: attempt 1 waits about baseMs, each next attempt doubles,
 * never above capMs. `random` is injectable so tests can pin it.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(exponent, 30));
  const spread = raw * policy.jitter;
  return Math.round(Math.min(policy.capMs, raw - spread + random() * spread * 2));
}
