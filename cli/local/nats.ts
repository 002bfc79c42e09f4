/**
 * A real `nats-server` with JetStream for integration tests, on 127.0.0.1 with a free port and
 * its own store directory. There is no skip: a missing binary fails the test that needs it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** Everything the server wrote so far. */
  output(): string;
  /** SIGTERM, wait for the exit; the store directory is removed. */
  stop(): Promise<void>;
  /** SIGKILL, wait for the exit; the store is kept for `restart()`. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store (after `kill()`, or stops it first). */
  restart(): Promise<void>;
}

const BINARY = process.env.MESH_TEST_NATS_SERVER ?? 'nats-server';
const live = new Set<ChildProcess>();

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

function requireBinary(): void {
  const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `${BINARY} cannot be run (${probe.error?.message ?? `status ${probe.status}`}): the NATS tests need a real nats-server with JetStream (Debian: apt-get install nats-server)`,
    );
  }
}

async function spawnNats(port: number, storeDir: string, log: string[]): Promise<ChildProcess> {
  const child = spawn(BINARY, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not report ready within 10 s:\n${log.join('')}`)), 10_000);
    const onData = (chunk: Buffer) => {
      log.push(chunk.toString('utf8'));
      if (/Server is ready/.test(log.join(''))) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (status ${code}, signal ${signal}) before it was ready:\n${log.join('')}`));
    });
  });
  try {
    await ready;
  } catch (error) {
    child.kill('SIGKILL');
    await exited(child);
    throw error;
  }
  return child;
}

export async function startNatsServer(): Promise<NatsServer> {
  requireBinary();
  const storeDir = await mkdtemp(join(tmpdir(), 'mesh-nats-'));
  const port = await freePort();
  const log: string[] = [];
  let child = await spawnNats(port, storeDir, log);
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited(child);
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    output: () => log.join(''),
    stop: async () => {
      await end('SIGTERM');
      await rm(storeDir, { recursive: true, force: true });
    },
    kill: () => end('SIGKILL'),
    restart: async () => {
      await end('SIGTERM');
      child = await spawnNats(port, storeDir, log);
    },
  };
}

/** Kills every nats-server still running; throws when one was (a test leaked it). */
export async function stopAllNatsServers(): Promise<void> {
  const leaked = [...live];
  await Promise.all(leaked.map((c) => (c.kill('SIGKILL'), exited(c))));
  if (leaked.length > 0) throw new Error(`${leaked.length} nats-server process(es) leaked (pids ${leaked.map((c) => c.pid).join(', ')}); killed`);
}
