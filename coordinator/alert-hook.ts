/**
 * Runs the configured alert hook: an argument vector started without a shell, the alert event
 * as one JSON line on stdin, killed after a timeout. Its output is not interpreted; the last
 * lines of stderr explain a failure.
 */
import { spawn } from 'node:child_process';

export interface HookOutcome {
  ok: boolean;
  reason?: string;
}

const STDERR_KEEP = 2000;

export function runAlertHook(argv: readonly string[], event: object, timeoutMs: number): Promise<HookOutcome> {
  return new Promise((resolve) => {
    let stderr = '';
    let settled = false;
    const done = (outcome: HookOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], shell: false });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done({ ok: false, reason: `killed after ${timeoutMs / 1000} s` });
    }, timeoutMs);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_KEEP)));
    child.once('error', (error) => done({ ok: false, reason: `cannot start ${argv[0]}: ${error.message}` }));
    child.once('close', (code, signal) => {
      if (code === 0) done({ ok: true });
      else
        done({
          ok: false,
          reason: `${argv[0]} exited with ${code ?? `signal ${signal}`}${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`,
        });
    });
    // A hook that does not read its stdin must not crash us (EPIPE).
    child.stdin.on('error', () => undefined);
    child.stdin.end(`${JSON.stringify(event)}\n`);
  });
}
