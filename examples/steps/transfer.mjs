#!/usr/bin/env node
// EXAMPLE step program (proc0 in the demo): copies a DAQ file to the output path through a
// temporary name, so a partial copy never sits under the final name.
import { copyFile, rename } from 'node:fs/promises';
import { applyFaults } from './fault-switch.mjs';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: transfer.mjs INPUT OUTPUT');
  process.exit(2);
}
await applyFaults('transfer', input);
await copyFile(input, `${output}.part`);
await rename(`${output}.part`, output);
