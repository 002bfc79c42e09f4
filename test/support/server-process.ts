/**
 * Runs `mesh server` as a child process for integration tests: an argument vector (no shell),
 * the JSON line it prints once listening, then `/_up`. Every process started here is tracked
 * so an `afterEach`/`after` hook can fail a test that leaked one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Tests run from dist/test/support; the repository root is three levels up. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const meshMain = join(repoRoot, 'dist', 'cli', 'main.js');

export interface ServerProcessOptions {
  site?: string;
  port?: number;
  dataDir?: string;
  /** Added to the parent's environment (e.g. MESH_<SITE>_USER / _PASSWORD). */
  env?: NodeJS.ProcessEnv;
  /** Extra arguments after `server --site S --port P --data D` (e.g. `['--host', '0.0.0.0']`). */
  args?: string[];
}

export interface ServerProcess {
  url: string;
  port: number;
  dataDir: string;
  pid: number;
  /** Everything the process wrote to stdout and stderr so far (for checks that nothing secret leaked). */
  output(): string;
  /** SIGTERM, wait for the exit; rejects unless it exited with status 0. */
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 20_000;
const live = new Set<ChildProcess>();
/** Data directories made here (not passed in), removed once their server is gone. */
const madeDirs = new Map<string, () => boolean>();

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

async function waitForUp(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mesh server exited with status ${child.exitCode} before ${url}/_up answered`);
    try {
      const res = await fetch(`${url}/_up`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url}/_up did not answer within ${STARTUP_TIMEOUT_MS} ms`);
}

interface Started {
  child: ChildProcess;
  url: string;
  port: number;
}

/** Spawns the server and resolves once it printed its JSON line and answers `/_up`. */
async function spawnServer(site: string, port: number, dataDir: string, env: NodeJS.ProcessEnv, args: string[], log: string[]): Promise<Started> {
  const argv = [meshMain, 'server', '--site', site, '--port', String(port), '--data', dataDir, ...args];
  const child = spawn(process.execPath, argv, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk));
  const lines = createInterface({ input: child.stdout! });
  const announced = new Promise<{ url: string; port: number }>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh server printed no JSON line within ${STARTUP_TIMEOUT_MS} ms:\n${log.join('')}`)), STARTUP_TIMEOUT_MS);
    lines.on('line', (line) => {
      log.push(line + '\n');
      try {
        const parsed = JSON.parse(line) as { url?: unknown; port?: unknown };
        if (typeof parsed.url === 'string' && typeof parsed.port === 'number') {
          clearTimeout(timer);
          resolveLine({ url: parsed.url, port: parsed.port });
        }
      } catch {
        // not the announcement
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`mesh server exited (status ${code}, signal ${signal}) before listening:\n${log.join('')}`));
    });
  });
  try {
    const { url, port: bound } = await announced;
    await waitForUp(url, child);
    return { child, url, port: bound };
  } catch (error) {
    child.kill('SIGKILL');
    await exited(child);
    throw error;
  }
}

export async function startServerProcess(opts: ServerProcessOptions = {}): Promise<ServerProcess> {
  const site = opts.site ?? 'test';
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), `mesh-${site}-`)));
  const madeHere = opts.dataDir === undefined;
  const env = opts.env ?? {};
  const args = opts.args ?? [];
  const log: string[] = [];
  let current: Started;
  try {
    current = await spawnServer(site, opts.port ?? 0, dataDir, env, args, log);
  } catch (error) {
    if (madeHere) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  if (madeHere) madeDirs.set(dataDir, () => current.child.exitCode !== null || current.child.signalCode !== null);

  const end = async (signal: NodeJS.Signals) => {
    const child = current.child;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited(child);
  };
  const handle: ServerProcess = {
    url: current.url,
    port: current.port,
    dataDir,
    pid: current.child.pid!,
    output: () => log.join(''),
    stop: async () => {
      const child = current.child;
      const wasRunning = child.exitCode === null && child.signalCode === null;
      await end('SIGTERM');
      if (wasRunning && child.exitCode !== 0)
        throw new Error(`mesh server exited with status ${child.exitCode} (signal ${child.signalCode}) on SIGTERM:\n${log.join('')}`);
    },
    kill: () => end('SIGKILL'),
    restart: async () => {
      await end('SIGTERM');
      current = await spawnServer(site, handle.port, dataDir, env, args, log);
      handle.pid = current.child.pid!;
    },
  };
  return handle;
}

/**
 * Kills every server process still running and removes the data directories made here for
 * servers that are gone; throws when a process was still running, so that
 * `afterEach(stopAllServerProcesses)` fails the test that leaked it.
 */
export async function stopAllServerProcesses(): Promise<void> {
  const leaked = [...live];
  await Promise.all(
    leaked.map((child) => {
      child.kill('SIGKILL');
      return exited(child);
    }),
  );
  for (const [dir, gone] of madeDirs) {
    if (!gone()) continue;
    madeDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
  }
  if (leaked.length > 0) throw new Error(`${leaked.length} mesh server process(es) leaked (pids ${leaked.map((c) => c.pid).join(', ')}); killed`);
}

/** Runs `mesh ARGS…` to completion (for commands that must fail): exit status and output. */
export function runMesh(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 20_000,
  input?: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [meshMain, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    live.add(child);
    if (input !== undefined) child.stdin?.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mesh ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      live.delete(child);
      resolveRun({ status, stdout, stderr });
    });
  });
}
