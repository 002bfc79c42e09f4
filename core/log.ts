import pino, { type Logger } from 'pino';

export type { Logger };

/** Removes `user:password@` from any URL inside a string, so nothing logged carries a credential. */
export function scrubUrl(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1');
}

export interface LoggerOptions {
  level?: string;
  /** Human-readable output; defaults to true when stderr is a terminal. */
  pretty?: boolean;
  name?: string;
}

/** JSON lines on stderr by default, pretty when stderr is a TTY; stdout stays free for command output. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const pretty = options.pretty ?? Boolean(process.stderr.isTTY);
  const base = {
    name: options.name ?? 'mesh',
    level: options.level ?? 'info',
    redact: { paths: ['password', '*.password', 'auth', '*.auth', 'headers.authorization'], censor: '[redacted]' },
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        method.apply(
          this,
          args.map((a) => (typeof a === 'string' ? scrubUrl(a) : a)),
        );
      },
    },
  };
  if (pretty) {
    return pino(base, pino.transport({ target: 'pino-pretty', options: { destination: 2, colorize: true, ignore: 'pid,hostname,name' } }));
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for library code called without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
