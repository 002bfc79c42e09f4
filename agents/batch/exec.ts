import { execFile } from 'node:child_process';
import { MeshError } from '../../core/errors.js';

export interface ExecResult {
  /** Exit status; null when the program could not be started or was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a batch-system command line: an argument vector, never a shell; the environment is inherited. */
export type Exec = (file: string, args: readonly string[]) => Promise<ExecResult>;

const TIMEOUT_MS = 60_000;

export const execCommand: Exec = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error && typeof (error as { code?: unknown }).code === 'string') {
        // ENOENT, EACCES: the command is not there at all.
        reject(new MeshError('BATCH_FAILED', `cannot run ${file}: ${error.message}`, { cause: error }));
        return;
      }
      const code = error ? ((error as { code?: number | null }).code ?? null) : 0;
      resolve({ code, stdout, stderr });
    });
  });

/** A failed command as an error whose message says what ran and what it printed. */
export function commandFailed(file: string, args: readonly string[], result: ExecResult): MeshError {
  const said = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' / ').slice(0, 400);
  return new MeshError('BATCH_FAILED', `${file} ${args[0] ?? ''} … exited with ${result.code ?? 'a signal'}${said ? `: ${said}` : ''}`);
}
