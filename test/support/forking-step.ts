/**
 * A step program for the one-run tests (run as `node forking-step.js …`): it does its work in a
 * grandchild of the agent when `--fork` is given (or in itself otherwise) and writes a timeline
 * to `--log`, one JSON line per event, so a test can tell runs apart and see them overlap:
 *   start  the step process began (pid, its process group, its start time in /proc)
 *   alive  every 100 ms from the worker while it works: a killed run's last sign of life
 *   end    the work is done (the output is written): a completed run
 * Every line carries `run`, the step process's pid: the run it belongs to.
 *   --log FILE --doc ID --step S --sleep MS --touch OUT [--fork | --fork-doc ID] [--sleep-again MS]
 * --fork-doc forks only for that document (one agent then runs both kinds side by side).
 * With --sleep-again, a run of a (doc, step) that already has a run in the timeline works that
 * long instead, in itself: the first run must be long and may fork (so that an orphan of it
 * would overlap the next one); how the next one works proves nothing, and the tests need not
 * wait for it nor pay for its fork.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface TimelineLine {
  event: 'start' | 'alive' | 'end';
  run: number;
  pid: number;
  pgid: number;
  /** Field 22 of /proc/<pid>/stat. */
  start_time: number;
  doc: string;
  step: string;
  role: 'step' | 'worker';
  at: number;
}

const args = process.argv.slice(2);
const opt = (name: string): string => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) throw new Error(`forking-step: ${name} is required`);
  return args[i + 1];
};

function selfStat(): { pgid: number; startTime: number } {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pgid: Number(fields[2]), startTime: Number(fields[19]) };
}

const log = opt('--log');
const role = args.includes('--worker') ? 'worker' : 'step';
const run = role === 'worker' ? Number(opt('--run')) : process.pid;
const { pgid, startTime } = selfStat();
const write = (event: TimelineLine['event']) => {
  const line: TimelineLine = { event, run, pid: process.pid, pgid, start_time: startTime, doc: opt('--doc'), step: opt('--step'), role, at: Date.now() };
  appendFileSync(log, `${JSON.stringify(line)}\n`);
};

/** Whether an earlier run of this (doc, step) is in the timeline: decided by the step, before its own start line. */
function runAgain(): boolean {
  if (role === 'worker' || !args.includes('--sleep-again')) return false;
  return readFileSync(log, { encoding: 'utf8', flag: 'a+' })
    .split('\n')
    .filter(Boolean)
    .map((text) => JSON.parse(text) as TimelineLine)
    .some((line) => line.event === 'start' && line.role === 'step' && line.doc === opt('--doc') && line.step === opt('--step'));
}

const again = runAgain();
const sleepMs = Number(opt(again ? '--sleep-again' : '--sleep'));
write('start');
const forks = !again && (args.includes('--fork') || (args.includes('--fork-doc') && opt('--fork-doc') === opt('--doc')));
if (role === 'step' && forks) {
  // The worker is the agent's grandchild: it must die with the agent all the same.
  const rest = args.filter((a) => a !== '--fork');
  const worker = spawn(process.execPath, [fileURLToPath(import.meta.url), ...rest, '--worker', '--run', String(process.pid)], { stdio: 'inherit' });
  worker.once('exit', (code) => process.exit(code ?? 1));
} else {
  const alive = setInterval(() => write('alive'), 100);
  setTimeout(() => {
    clearInterval(alive);
    writeFileSync(opt('--touch'), `${opt('--doc')}\n`);
    write('end');
  }, sleepMs);
}
