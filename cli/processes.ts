import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MeshError } from '../core/errors.js';

/** The compiled `mesh` entry point (dist/cli/main.js). */
export const MESH_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.js');

/** Starts `mesh …` as a child process: an argument vector, never a shell. */
export function spawnMesh(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; stdio?: 'inherit' | 'pipe' | 'ignore'; logFile?: number } = {},
): ChildProcess {
  const output = options.logFile ?? (options.stdio === 'inherit' ? 'inherit' : (options.stdio ?? 'ignore'));
  return spawn(process.execPath, [MESH_MAIN, ...args], {
    env: options.env ?? process.env,
    stdio: ['ignore', output === 'inherit' ? 'inherit' : 'pipe', output],
  });
}

/** Waits for a child to exit (SIGTERM first, SIGKILL after `graceMs`). */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface ServerChild {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `mesh server` and waits for the JSON line announcing its URL. */
export async function startServerChild(
  site: string,
  dataDir: string,
  options: { port?: number; env?: NodeJS.ProcessEnv; logFile?: number; recordClients?: string } = {},
): Promise<ServerChild> {
  const record = options.recordClients ? ['--record-clients', options.recordClients] : [];
  const child = spawnMesh(['server', '--site', site, '--port', String(options.port ?? 0), '--data', dataDir, ...record], {
    env: options.env,
    stdio: 'pipe',
    logFile: options.logFile,
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const announced = new Promise<{ url: string; port: number }>((resolve, reject) => {
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new MeshError('SERVER_ERROR', `mesh server printed ${line.slice(0, 200)}`));
      }
    });
    child.once('exit', (code) => reject(new MeshError('SERVER_ERROR', `mesh server exited with status ${code} before listening`)));
  });
  const { url, port } = await announced;
  return { url, port, child, stop: () => stopChild(child) };
}
