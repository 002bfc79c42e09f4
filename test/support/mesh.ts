import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { pushDesigns } from '../../store/designs.js';
import { Database } from '../../store/database.js';
import { type ServerProcess, meshMain as MESH, repoRoot, startServerProcess, stopAllServerProcesses } from './server-process.js';
import { testFolder } from './folders.js';
import { historyTo } from '../../core/provenance.js';

export { runMesh } from './server-process.js';
export const NOOP = join(repoRoot, 'examples', 'steps', 'noop.mjs');

let counter = 0;
/** A database name no other test uses. */
export function uniqueDatabase(prefix = 'test'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
}

export interface TestMesh {
  dir: string;
  configFile: string;
  config: MeshConfig;
  db: Database;
  /** Where the noop steps append "<doc> <step>". */
  runLog: string;
}

/**
 * A one-site mesh on a running server, in a fresh folder and database, with three steps that
 * run the example noop program (each appending `<doc> <step>` to runLog), couchapp pushed.
 */
export async function makeMesh(
  serverUrl: string,
  overrides: {
    stepArgs?: (step: string) => string[];
    lease_s?: number;
    max_attempts?: number;
    agent?: Record<string, number>;
    steps?: string[];
    push?: boolean;
    credentials?: { user: string; password: string };
  } = {},
): Promise<TestMesh> {
  const dir = testFolder('mesh-test-');
  const runLog = join(dir, 'runs.log');
  const stepNames = overrides.steps ?? ['proc0', 'proc1', 'proc2'];
  const raw = {
    database: uniqueDatabase(),
    doc_type: 'daqdocument',
    sites: { alpha: { server: serverUrl, reachable: true, long_running: true, log_dir: join(dir, 'logs') } },
    ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: stepNames.map((name) => ({
      name,
      site: 'alpha',
      run: [process.execPath, NOOP, '--log', runLog, '--doc', '{doc_id}', '--step', '{step}', '--touch', '{out}', ...(overrides.stepArgs?.(name) ?? [])],
      out: join(dir, 'out', name, '{run_name}_{file_number}'),
      timeout_s: 30,
      max_attempts: overrides.max_attempts ?? 3,
      lease_s: overrides.lease_s ?? 10,
    })),
    agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5, ...(overrides.agent ?? {}) },
  };
  const configFile = join(dir, 'mesh.json');
  await writeFile(configFile, JSON.stringify(raw, null, 2));
  const config = parseMeshConfig(raw, configFile);
  const db = new Database({ url: serverUrl, database: config.database, credentials: overrides.credentials });
  await db.ensure();
  if (overrides.push !== false) await pushDesigns(db, config);
  return { dir, configFile, config, db, runLog };
}

/** Inserts `count` closed documents directly (what ingest would write), in bulk. */
export async function seedDocuments(mesh: TestMesh, count: number, runName = 'lg23b002'): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 500) {
    const docs = [];
    for (let i = start; i < Math.min(count, start + 500); i++) {
      const id = `run_${runName}_${String(i).padStart(4, '0')}`;
      ids.push(id);
      const file = join(mesh.dir, 'daq', `${runName}_${String(i).padStart(3, '0')}`);
      docs.push({
        _id: id,
        type: 'daqdocument',
        run_name: runName,
        file_number: i,
        file,
        size_in_bytes: 0,
        date_closed: new Date().toISOString(),
        status: 'closed',
        history: historyTo('closed', []),
      });
    }
    await mesh.db.bulk(docs);
  }
  await mkdir(join(mesh.dir, 'daq'), { recursive: true });
  return ids;
}

const children = new Set<ChildProcess>();

/** Starts `mesh <args>` with its output appended to a log file in the mesh folder. */
export function spawnMeshProcess(args: string[], options: { logFile?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
  const child = spawn(process.execPath, [MESH, ...args], { stdio: ['ignore', out, out], env: { ...process.env, MESH_LOG_LEVEL: 'info', ...options.env } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function startAgent(mesh: TestMesh, name: string, extra: string[] = []): ChildProcess {
  return spawnMeshProcess(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--name', name, ...extra], { logFile: join(mesh.dir, `${name}.log`) });
}

export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = once(child, 'exit');
  child.kill(signal);
  const [code] = (await exited) as [number | null];
  return code;
}

/** Stops every process this module started; returns how many were still running (a leak). */
export async function stopAllMeshProcesses(): Promise<number> {
  const left = [...children];
  await Promise.all(left.map((c) => stopProcess(c, 'SIGKILL')));
  return left.length;
}

/** Polls `condition` until it holds, at most `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await condition();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

/**
 * One embedded server for a whole `describe`, handed to `set` once it is up; after each test,
 * fails when mesh processes leaked; afterwards stops the server and checks nothing else leaked.
 */
export function serverForSuite(set: (server: ServerProcess) => void): void {
  let server: ServerProcess | undefined;
  before(async () => {
    server = await startServerProcess();
    set(server);
  });
  afterEach(async () => {
    assert.equal(await stopAllMeshProcesses(), 0, 'a test left mesh processes running');
  });
  after(async () => {
    await server?.stop();
    await stopAllServerProcesses();
  });
}
