#!/usr/bin/env node
// EXAMPLE step program for tests and benchmarks: does nothing, or what its options say:
//   --log FILE      append "<doc> <step>" to FILE (tests count how often each step ran)
//   --touch FILE    create FILE (an output)
//   --sleep MS      wait first
//   MESH_FAULT_DIR  see fault-switch.mjs (the document id stands for the input file name)
//   --fail-until N  exit 3 while FILE(--counter) holds fewer than N lines, appending one each time
import { appendFileSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { applyFaults } from './fault-switch.mjs';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
await applyFaults('noop', opt('--doc'));
const sleepMs = Number(opt('--sleep') ?? 0);
if (sleepMs > 0) await new Promise((r) => setTimeout(r, sleepMs));
const log = opt('--log');
if (log) appendFileSync(log, `${opt('--doc')} ${opt('--step')}\n`);
const failUntil = Number(opt('--fail-until') ?? 0);
const counter = opt('--counter');
if (failUntil > 0 && counter) {
  const seen = existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0;
  appendFileSync(counter, 'x\n');
  if (seen < failUntil) {
    console.error(`failing on purpose (${seen + 1}/${failUntil})`);
    process.exit(3);
  }
}
const touch = opt('--touch');
if (touch) writeFileSync(touch, `${opt('--doc')}\n`);
