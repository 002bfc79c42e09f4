/**
 * The worker thread of agents/spawner.ts: starts the processes it is asked for and reports
 * their pid and their end. Only this thread blocks while a child is forked and exec'd.
 */
import { spawn } from 'node:child_process';
import { parentPort } from 'node:worker_threads';
import type { SpawnReport, SpawnRequest } from './spawner.js';

const port = parentPort;
if (!port) throw new Error('spawner-worker.js runs as a worker thread of agents/spawner.ts');
const report = (message: SpawnReport) => port.postMessage(message);

port.on('message', (request: SpawnRequest) => {
  try {
    const child = spawn(request.file, request.args, {
      cwd: request.cwd,
      env: request.env,
      stdio: ['ignore', request.stdout, request.stderr],
      shell: false,
      detached: true,
    });
    let started = false;
    child.once('spawn', () => {
      started = true;
      report({ id: request.id, kind: 'spawned', pid: child.pid as number });
    });
    child.once('error', (error) => {
      if (!started) report({ id: request.id, kind: 'failed', message: error.message });
    });
    child.once('close', (code, signal) => {
      if (started) report({ id: request.id, kind: 'ended', code, signal });
    });
  } catch (error) {
    report({ id: request.id, kind: 'failed', message: error instanceof Error ? error.message : String(error) });
  }
});
