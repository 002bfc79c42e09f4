import { spawn } from 'node:child_process';
import { open, stat } from 'node:fs/promises';

export interface RunOptions {
  timeoutMs: number;
  /** Aborting kills the process (SIGTERM, then SIGKILL after killGraceMs). */
  signal?: AbortSignal;
  stdoutPath: string;
  stderrPath: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  killGraceMs?: number;
}

export interface RunOutcome {
  exit_code: number | null;
  signal: string | null;
  duration_s: number;
  timed_out: boolean;
  aborted: boolean;
  /** The process could not be started at all (e.g. the program does not exist). */
  spawn_error?: string;
}

/**
 * Runs an argument vector, never through a shell, with its output in two log files.
 * Resolves in every case; the caller decides what an outcome means.
 */
export async function runCommand(argv: readonly string[], options: RunOptions): Promise<RunOutcome> {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  const stdout = await open(options.stdoutPath, 'a');
  const stderr = await open(options.stderrPath, 'a');
  try {
    return await new Promise<RunOutcome>((resolve) => {
      let timedOut = false;
      let aborted = false;
      let settled = false;
      const child = spawn(argv[0], argv.slice(1), {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', stdout.fd, stderr.fd],
        shell: false,
      });
      const kill = () => {
        child.kill('SIGTERM');
        setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), options.killGraceMs ?? 5000).unref();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, options.timeoutMs);
      const onAbort = () => {
        aborted = true;
        kill();
      };
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (outcome: Omit<RunOutcome, 'duration_s' | 'timed_out' | 'aborted'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve({ ...outcome, duration_s: elapsed(), timed_out: timedOut, aborted });
      };
      child.once('error', (error) => finish({ exit_code: null, signal: null, spawn_error: error.message }));
      child.once('close', (code, signal) => finish({ exit_code: code, signal }));
    });
  } finally {
    await stdout.close();
    await stderr.close();
  }
}

/** The last lines of a log file (at most `bytes` bytes), for a failure record. */
export async function tail(path: string, bytes = 2000): Promise<string> {
  try {
    const size = (await stat(path)).size;
    const handle = await open(path, 'r');
    try {
      const length = Math.min(size, bytes);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      return buffer.toString('utf8').trimEnd();
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}
