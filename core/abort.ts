/**
 * Abort signals combined by hand, in place of `AbortSignal.any` and `AbortSignal.timeout`.
 *
 * On Node 20 a signal made by `AbortSignal.any` is held only weakly by its sources: once
 * `fetch` has its headers nothing else refers to it, it can be garbage-collected, and aborting
 * the source no longer reaches the request (an idle agent then waited out its 25 s longpoll
 * after SIGTERM). Here every source holds a listener that refers to the combined controller,
 * and the timer refers to it too, so the combination lives as long as anything can abort it.
 * `release()` removes the listeners and the timer: a long-lived source (an agent's stop signal)
 * would otherwise collect one listener per request.
 */

export interface LinkedSignal {
  readonly signal: AbortSignal;
  /** True when the combination aborted because its own timeout expired (not a source). */
  readonly timedOut: boolean;
  /** Detaches from the sources and clears the timer. Idempotent; the signal keeps its state. */
  release(): void;
}

/**
 * A signal that aborts when any of `sources` does (with that source's reason) or, with
 * `timeoutMs`, after that long (with a `TimeoutError`, as `AbortSignal.timeout`).
 */
export function linkSignals(sources: ReadonlyArray<AbortSignal | undefined>, options: { timeoutMs?: number } = {}): LinkedSignal {
  const controller = new AbortController();
  const detach: Array<() => void> = [];
  let timedOut = false;
  const release = (): void => {
    for (const undo of detach.splice(0)) undo();
  };
  const abort = (reason: unknown): void => {
    release();
    controller.abort(reason);
  };
  for (const source of sources) {
    if (!source) continue;
    if (source.aborted) {
      abort(source.reason);
      break;
    }
    const onAbort = (): void => abort(source.reason);
    source.addEventListener('abort', onAbort, { once: true });
    detach.push(() => source.removeEventListener('abort', onAbort));
  }
  if (options.timeoutMs !== undefined && !controller.signal.aborted) {
    const timer = setTimeout(() => {
      timedOut = true;
      abort(new DOMException(`timed out after ${options.timeoutMs} ms`, 'TimeoutError'));
    }, options.timeoutMs);
    // A pending deadline alone must not keep a stopping process alive.
    timer.unref();
    detach.push(() => clearTimeout(timer));
  }
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    release,
  };
}

/** A signal that aborts after `ms` (a `TimeoutError`); held by its own timer until then. */
export function timeoutSignal(ms: number): AbortSignal {
  return linkSignals([], { timeoutMs: ms }).signal;
}
