/**
 * The running topology as the harness drives it: the parts a fault may take away, and `heal()`
 * that brings every one of them back (an operator, or systemd, restarting what died).
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerSite, Topology } from '../../cli/topology.js';

export class Rig {
  coordinator: ChildProcess | undefined;
  agent: ChildProcess | undefined;
  /** Sites whose server a fault stopped. */
  readonly serversDown = new Set<ServerSite>();
  natsDown = false;
  /** The coordinator was paused (SIGSTOP) by a replication fault. */
  coordinatorPaused = false;

  constructor(
    readonly topology: Topology,
    readonly switchDir: string,
  ) {}

  /** Turns a fault switch on (see examples/steps/fault-switch.mjs). */
  async setSwitch(name: string): Promise<void> {
    await writeFile(join(this.switchDir, name), '');
  }

  async clearSwitch(name: string): Promise<void> {
    await rm(join(this.switchDir, name), { force: true });
  }

  startCoordinator(): void {
    this.coordinator = this.topology.startCoordinator();
  }

  startAgent(): void {
    this.agent = this.topology.startModaneAgent();
  }

  /** Switches left on through the settle, so their document's step fails for good (removed by `clearSwitches`). */
  readonly permanent = new Set<string>();

  /** Removes fault switches: all but the permanent ones, or (`all`) every one. */
  async clearSwitches(all: boolean): Promise<string[]> {
    const done: string[] = [];
    for (const name of await readdir(this.switchDir)) {
      if (!all && this.permanent.has(name)) continue;
      await rm(join(this.switchDir, name), { force: true });
      this.permanent.delete(name);
      done.push(`switch ${name} removed`);
    }
    return done;
  }

  /** Restarts whatever a fault stopped and removes the fault switches (not the permanent ones). Idempotent. */
  async heal(): Promise<string[]> {
    const done = await this.clearSwitches(false);
    for (const site of [...this.serversDown]) {
      await this.topology.startServer(site);
      this.serversDown.delete(site);
      done.push(`${site} server started`);
    }
    if (this.natsDown && this.topology.nats) {
      await this.topology.nats.restart();
      this.natsDown = false;
      done.push('nats-server started');
    }
    if (this.coordinatorPaused && this.coordinator) {
      this.coordinator.kill('SIGCONT');
      this.coordinatorPaused = false;
      done.push('coordinator resumed');
    }
    if (!alive(this.coordinator)) {
      this.startCoordinator();
      done.push('coordinator started');
    }
    if (!alive(this.agent)) {
      this.startAgent();
      done.push('modane agent started');
    }
    return done;
  }
}

export function alive(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** Sends `signal` and waits for the exit (SIGKILL after `graceMs` if it lingers). */
export async function killChild(child: ChildProcess | undefined, signal: NodeJS.Signals, graceMs = 15_000): Promise<void> {
  if (!alive(child)) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
