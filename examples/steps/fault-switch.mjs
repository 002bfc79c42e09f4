// Test aid shared by the example steps: when MESH_FAULT_DIR names a folder, a file in it makes
// this step fail or hang, so tests and the fault harness can break a step from outside:
//   <program>.fail  or  <input file name>.fail   exit 4 with a message on stderr
//   <program>.hang  or  <input file name>.hang   sleep until killed
// <program> is the step program's name without .mjs (transfer, convert, analyse, noop).
// When MESH_RUN_LOG names a file, every run appends JSON lines to it
// ({program, input, pid, at, started, phase}): `start` first, `alive` every 250 ms while it runs
// and `end` when it exits, so a test can count how often each step really ran and see two runs
// overlap (a run killed by a signal writes no `end`: its last `alive` says when it last ran).
// MESH_STEP_SLEEP_MS makes every run take that long first (so faults land in running steps).
import { appendFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';

export async function applyFaults(program, input) {
  const runLog = process.env.MESH_RUN_LOG;
  if (runLog) logRun(runLog, program, input);
  const pause = Number(process.env.MESH_STEP_SLEEP_MS ?? 0);
  if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
  const dir = process.env.MESH_FAULT_DIR;
  if (!dir) return;
  const names = [program, ...(input ? [basename(input)] : [])];
  const switched = (kind) => names.find((name) => existsSync(join(dir, `${name}.${kind}`)));
  const fail = switched('fail');
  if (fail !== undefined) {
    console.error(`failing on purpose: ${join(dir, `${fail}.fail`)} exists`);
    process.exit(4);
  }
  if (switched('hang') !== undefined) await new Promise(() => setInterval(() => {}, 60_000));
}

function logRun(runLog, program, input) {
  const started = new Date().toISOString();
  const line = (phase) => {
    const at = phase === 'start' ? started : new Date().toISOString();
    appendFileSync(runLog, `${JSON.stringify({ program, input: input ?? null, pid: process.pid, at, started, phase })}\n`);
  };
  line('start');
  setInterval(() => line('alive'), 250).unref();
  process.once('exit', () => line('end'));
}
