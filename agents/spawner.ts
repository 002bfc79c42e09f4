/**
 * Starts step processes from a worker thread, not from the agent's event loop. Node's spawn
 * blocks its thread until the child has exec'd: fork copies the agent's page tables, then
 * waits for the child to be scheduled. Measured on a loaded 2-core machine: 10–14 ms per
 * spawn for a 50 MiB process, 42 ms at 250 MiB; with 16 steps at a time the agent's claims and
 * results waited behind them. The worker lives as long as the agent (its thread is the parent
 * whose death `setpriv --pdeathsig` watches), and keeps the process alive only while a step runs.
 */
import { Worker } from 'node:worker_threads';

export interface SpawnRequest {
  id: number;
  file: string;
  args: string[];
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** File descriptors of the agent (the worker shares them): the step's stdout and stderr. */
  stdout: number;
  stderr: number;
}

export type SpawnReport =
  | { id: number; kind: 'spawned'; pid: number }
  | { id: number; kind: 'failed'; message: string }
  | { id: number; kind: 'ended'; code: number | null; signal: NodeJS.Signals | null };

export interface ProcessEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedProcess {
  pid: number;
  /** When the process has exited and its output is closed. */
  ended: Promise<ProcessEnd>;
}

interface Waiting {
  started: (pid: number) => void;
  failed: (error: Error) => void;
  ended: (end: ProcessEnd) => void;
}

export class StepSpawner {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();

  /** Starts `file` with `args` in a process group of its own; rejects when it cannot be started. */
  spawn(request: Omit<SpawnRequest, 'id'>): Promise<SpawnedProcess> {
    const worker = this.running();
    const id = this.nextId++;
    return new Promise<SpawnedProcess>((resolve, reject) => {
      let ended: (end: ProcessEnd) => void = () => {};
      const end = new Promise<ProcessEnd>((r) => (ended = r));
      this.waiting.set(id, {
        started: (pid) => resolve({ pid, ended: end }),
        failed: (error) => {
          this.forget(id);
          reject(error);
        },
        ended: (result) => {
          this.forget(id);
          ended(result);
        },
      });
      worker.ref();
      worker.postMessage({ ...request, id } satisfies SpawnRequest);
    });
  }

  private forget(id: number): void {
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.worker?.unref();
  }

  private running(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./spawner-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (report: SpawnReport) => {
      const waiting = this.waiting.get(report.id);
      if (!waiting) return;
      if (report.kind === 'spawned') waiting.started(report.pid);
      else if (report.kind === 'failed') waiting.failed(new Error(report.message));
      else waiting.ended({ code: report.code, signal: report.signal });
    });
    // A worker that died cannot report: its processes died with it (pdeathsig); the steps waiting on them end.
    const gone = (error?: unknown) => {
      if (this.worker === worker) this.worker = undefined;
      for (const waiting of [...this.waiting.values()]) {
        waiting.failed(new Error(`the step spawner stopped${error ? `: ${String(error)}` : ''}`));
        waiting.ended({ code: null, signal: 'SIGKILL' });
      }
    };
    worker.on('error', gone);
    worker.on('exit', () => gone());
    this.worker = worker;
    return worker;
  }
}

export const stepSpawner = new StepSpawner();
