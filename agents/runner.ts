import { open, stat } from 'node:fs/promises';
import { stepEnvironment } from '../config/child-env.js';
import { stepSpawner } from './spawner.js';
import { stepSupervisor } from './step-supervisor.js';

/** setpriv's exit statuses when the program it should execute cannot be (126) or does not exist (127). */
const EXEC_FAILED = 126;
const EXEC_NOT_FOUND = 127;

export interface RunOptions {
  timeoutMs: number;
  /** Aborting kills the process (SIGTERM, then SIGKILL after killGraceMs). */
  signal?: AbortSignal;
  stdoutPath: string;
  stderrPath: string;
  cwd?: string;
  /** Default: the agent's environment without the mesh's credentials (config/child-env.ts). */
  env?: NodeJS.ProcessEnv;
  killGraceMs?: number;
  /** Called once the process runs, with its pid (also its process group's id). */
  onSpawn?: (pid: number) => void;
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
 * The process leads its own process group and dies with the agent (step-supervisor.ts); once it
 * exits, what it left running in its group is killed: a run ends with its process.
 * Resolves in every case; the caller decides what an outcome means.
 * Throws only when the supervision cannot be set up (setpriv missing).
 */
export async function runCommand(argv: readonly string[], options: RunOptions): Promise<RunOutcome> {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  stepSupervisor.start();
  const stdout = await open(options.stdoutPath, 'a');
  const stderr = await open(options.stderrPath, 'a');
  try {
    return await new Promise<RunOutcome>((resolve) => {
      let timedOut = false;
      let aborted = false;
      let settled = false;
      let ended = false;
      /** Known once the worker has started the process (stepSpawner): a kill asked before then is done at once after. */
      let pgid: number | undefined;
      let killWanted = false;
      const signalGroup = (signal: NodeJS.Signals) => {
        if (pgid === undefined) return;
        try {
          process.kill(-pgid, signal);
        } catch {
          // ESRCH: nothing of the group is left.
        }
      };
      const kill = () => {
        killWanted = true;
        signalGroup('SIGTERM');
        setTimeout(() => !ended && signalGroup('SIGKILL'), options.killGraceMs ?? 5000).unref();
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
        signalGroup('SIGKILL');
        if (pgid !== undefined) stepSupervisor.unregister(pgid);
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve({ ...outcome, duration_s: elapsed(), timed_out: timedOut, aborted });
      };
      const wrapped = stepSupervisor.wrap(argv);
      stepSpawner
        .spawn({ file: wrapped[0], args: wrapped.slice(1), cwd: options.cwd, env: options.env ?? stepEnvironment(), stdout: stdout.fd, stderr: stderr.fd })
        .then(
          (child) => {
            pgid = child.pid;
            stepSupervisor.register(pgid);
            options.onSpawn?.(pgid);
            if (killWanted) kill();
            void child.ended.then(({ code, signal }) => {
              ended = true;
              if (code !== EXEC_FAILED && code !== EXEC_NOT_FOUND) return finish({ exit_code: code, signal });
              // setpriv could not execute the program: the same failure as a spawn error without it.
              void tail(options.stderrPath, 500).then((text) => {
                const line = text
                  .split('\n')
                  .reverse()
                  .find((l) => l.startsWith('setpriv: failed to execute'));
                finish(line ? { exit_code: null, signal: null, spawn_error: line.slice('setpriv: '.length) } : { exit_code: code, signal });
              });
            });
          },
          (error: Error) => {
            ended = true;
            finish({ exit_code: null, signal: null, spawn_error: error.message });
          },
        );
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
