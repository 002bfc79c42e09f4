/**
 * Step processes die with their agent. Node cannot set a parent-death signal, so each local step
 * runs in its own process group through util-linux `setpriv --pdeathsig SIGKILL` (the group's
 * leader dies with the agent's thread), and one supervisor process per agent
 * (supervisor-main.ts) holds the groups: when its stdin pipe ends because the agent died, it
 * SIGKILLs them, descendants included. One supervisor, not one per step: spawns are the
 * pipeline's bottleneck.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { MeshError } from '../core/errors.js';

const SUPERVISOR_MAIN = fileURLToPath(new URL('./supervisor-main.js', import.meta.url));
const SETPRIV = 'setpriv';

export class StepSupervisor {
  private child: ChildProcess | undefined;
  /** Groups registered and not yet over: handed again to a supervisor started after one died. */
  private readonly live = new Set<number>();
  private checked = false;
  private readyPromise: Promise<void> = Promise.resolve();

  /** Starts the supervisor if it is not running; throws when setpriv is missing. Idempotent. */
  start(): void {
    if (!this.checked) {
      const probe = spawnSync(SETPRIV, ['--version'], { stdio: 'ignore', timeout: 5000 });
      if (probe.error || probe.status !== 0) {
        throw new MeshError(
          'PROCESS_FAILED',
          `cannot run setpriv (${probe.error?.message ?? `exit status ${probe.status}`}): CouchMesh starts every step through util-linux's setpriv so that step processes die with their agent; install util-linux (Debian: apt-get install util-linux) and put setpriv on PATH`,
        );
      }
      this.checked = true;
    }
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    // Detached: a signal to the agent's process group (Ctrl-C) does not reach it; only EOF counts.
    const child = spawn(process.execPath, [SUPERVISOR_MAIN], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    this.readyPromise = new Promise<void>((resolve) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', () => resolve());
    });
    child.stdin?.on('error', () => {
      // The supervisor died (EPIPE): the next registration starts another one.
    });
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    // Neither the process nor its pipe keeps the agent's event loop alive.
    child.unref();
    (child.stdin as Socket | null)?.unref();
    (child.stdout as Socket | null)?.unref();
    this.child = child;
    for (const pgid of this.live) this.send(`+${pgid}`);
  }

  /** Resolves once the supervisor ignores signals (or has exited); agents need not wait for it. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** The argument vector that runs `argv` with a parent-death SIGKILL. */
  wrap(argv: readonly string[]): string[] {
    return [SETPRIV, '--pdeathsig', 'SIGKILL', '--', ...argv];
  }

  register(pgid: number): void {
    this.live.add(pgid);
    this.start();
    this.send(`+${pgid}`);
  }

  unregister(pgid: number): void {
    if (!this.live.delete(pgid)) return;
    this.send(`-${pgid}`);
  }

  /**
   * Ends the pipe as the agent's death would: the supervisor kills every group still
   * registered and exits. Resolves once it has.
   */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.stdin?.end();
    await exited;
    this.live.clear();
  }

  /** The supervisor's pid (tests), undefined when none runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private send(line: string): void {
    this.child?.stdin?.write(`${line}\n`);
  }
}

/** The agent process's one supervisor. */
export const stepSupervisor = new StepSupervisor();
