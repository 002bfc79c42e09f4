import { MeshError, errorMessage } from '../core/errors.js';

/** Exit statuses: 0 done, 1 failed at run time, 2 bad input (config, arguments, documents named). */
export function exitCodeFor(error: unknown): number {
  if (error instanceof MeshError && (error.code === 'CONFIG_INVALID' || error.code === 'BAD_INPUT' || error.code === 'CREDENTIALS_MISSING')) return 2;
  return 1;
}

/** The line `mesh` prints for an error: its message without the credentials of any URL in it. */
export function failureLine(error: unknown): string {
  return `mesh: ${errorMessage(error).replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1')}`;
}

/** Prints a user-facing error (no stack, no credentials) and exits. */
export function fail(error: unknown): never {
  process.stderr.write(`${failureLine(error)}\n`);
  process.exit(exitCodeFor(error));
}

/** Wraps a command action so every error ends as a clear message and the right status. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (error) {
      fail(error);
    }
  };
}
