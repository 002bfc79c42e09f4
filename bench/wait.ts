import { sleep } from '../core/sleep.js';

/** The bench was interrupted (SIGINT/SIGTERM): sections stop waiting and clean up. */
export class Interrupted extends Error {
  constructor(what: string) {
    super(`interrupted while waiting for ${what}`);
  }
}

/**
 * Polls `condition` every `everyMs` until it returns a value. A passed deadline, a call that
 * never answers (an overloaded server) or `signal` end the wait with an error, so a section
 * never hangs and its `finally` always stops what it started.
 */
export async function waitUntil<T>(
  what: string,
  condition: () => Promise<T | undefined | false>,
  options: { timeoutMs: number; everyMs?: number; signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const remaining = deadline - Date.now();
    if (options.signal?.aborted) throw new Interrupted(what);
    if (remaining <= 0) throw new Error(`timed out after ${options.timeoutMs / 1000} s waiting for ${what}`);
    const result = await within(condition(), remaining, what);
    if (result !== undefined && result !== false) return result;
    await sleep(options.everyMs ?? 100, options.signal);
  }
}

/** `promise`, or an error after `ms`: a request stuck on an overloaded server must not stall the bench. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${(ms / 1000).toFixed(0)} s waiting for ${what}`)), ms)),
  );
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
