/**
 * The harness's processes, found by a marker in their environment: every process of the
 * topology gets MESH_FAULT_DIR=<this run's switch folder> (lyon's over SSH and Slurm too), a
 * value no other process on the machine carries. So the harness can pick a lyon agent or a
 * batch job's process to kill, and find leftovers, without ever touching anyone else's.
 */
import { readFile, readdir } from 'node:fs/promises';

export interface MarkedProcess {
  pid: number;
  /** The argument vector, joined by spaces. */
  cmdline: string;
}

async function read(path: string): Promise<string | undefined> {
  return readFile(path, 'latin1').catch(() => undefined);
}

/** Live processes whose environment holds `name=value` exactly. */
export async function markedProcesses(name: string, value: string): Promise<MarkedProcess[]> {
  const wanted = `${name}=${value}`;
  const found: MarkedProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const environ = await read(`/proc/${pid}/environ`);
    if (!environ || !environ.split('\0').includes(wanted)) continue;
    const stat = await read(`/proc/${pid}/stat`);
    if (!stat || /^\d+ \(.*\) Z /s.test(stat)) continue; // a zombie is already dead
    const cmdline = ((await read(`/proc/${pid}/cmdline`)) ?? '').split('\0').filter(Boolean).join(' ');
    found.push({ pid, cmdline });
  }
  return found;
}

export function killPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}
