/**
 * Running a program on another site over an SSH session. SSH carries one command string
 * that the remote login shell parses, so an argument vector is turned into a string of
 * strictly single-quoted words: inside '…' a POSIX shell interprets nothing, and a quote
 * itself is written '\''. Control characters are refused rather than quoted (a newline in
 * quotes is not portable across login shells).
 */
import type { Client, ClientChannel } from 'ssh2';
import { MeshError } from '../../core/errors.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** One word for a POSIX shell, single-quoted whatever it holds. */
export function quoteArg(arg: string): string {
  if (CONTROL.test(arg))
    throw new MeshError('BAD_INPUT', `refusing to send ${JSON.stringify(arg).slice(0, 120)} to a remote shell: it contains a control character`);
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The command string for an argument vector, every word single-quoted. */
export function remoteCommandLine(argv: readonly string[]): string {
  if (argv.length === 0) throw new MeshError('BAD_INPUT', 'empty remote command');
  return argv.map(quoteArg).join(' ');
}

export interface ExecOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Called with each complete line of the remote program's stdout / stderr (without the newline). */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** Keep stdout in the outcome (up to this many bytes); otherwise it only goes to onLine. */
  captureStdout?: number;
  /** After an abort or timeout: how long to wait for the program to exit on SIGTERM before closing the channel. */
  killGraceMs?: number;
}

export interface ExecOutcome {
  exit_code: number | null;
  signal: string | null;
  stdout: string;
  timed_out: boolean;
  aborted: boolean;
}

const MAX_LINE = 16_384;

function lineSplitter(emit: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  let rest = '';
  return {
    push(chunk) {
      rest += chunk.toString('utf8');
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      if (rest.length > MAX_LINE) {
        lines.push(rest);
        rest = '';
      }
      for (const line of lines) emit(line.replace(/\r$/, '').slice(0, MAX_LINE));
    },
    end() {
      if (rest) emit(rest.slice(0, MAX_LINE));
      rest = '';
    },
  };
}

/**
 * Runs `argv` on the remote side and resolves when its channel closes, in every case but a
 * refused channel (then it rejects with SSH_FAILED). Abort or timeout sends SIGTERM to the
 * remote program, then closes the channel after killGraceMs.
 */
export function execRemote(client: Client, argv: readonly string[], options: ExecOptions = {}): Promise<ExecOutcome> {
  const command = remoteCommandLine(argv);
  return new Promise((resolve, reject) => {
    client.exec(command, (error: Error | undefined, channel: ClientChannel) => {
      if (error) return reject(new MeshError('SSH_FAILED', `the server refused to run ${argv[0]}: ${error.message}`, { cause: error }));
      let stdout = '';
      let exitCode: number | null = null;
      let exitSignal: string | null = null;
      let timedOut = false;
      let aborted = false;
      const out = lineSplitter((line) => options.onLine?.('stdout', line));
      const err = lineSplitter((line) => options.onLine?.('stderr', line));
      channel.on('data', (chunk: Buffer) => {
        if (options.captureStdout && stdout.length < options.captureStdout) stdout += chunk.toString('utf8').slice(0, options.captureStdout - stdout.length);
        out.push(chunk);
      });
      channel.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      channel.on('exit', (code: number | null, signal?: string) => {
        exitCode = typeof code === 'number' ? code : null;
        exitSignal = signal ?? null;
      });
      const stopRemote = () => {
        // OpenSSH ≥ 7.9 delivers the signal; older servers ignore it and the close below ends the session.
        channel.signal('TERM');
        setTimeout(() => channel.close(), options.killGraceMs ?? 10_000).unref();
      };
      const onAbort = () => {
        aborted = true;
        stopRemote();
      };
      const timer = options.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            stopRemote();
          }, options.timeoutMs)
        : undefined;
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
      channel.once('close', () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        out.end();
        err.end();
        resolve({ exit_code: exitCode, signal: exitSignal, stdout, timed_out: timedOut, aborted });
      });
    });
  });
}
