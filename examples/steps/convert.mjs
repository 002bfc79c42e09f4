#!/usr/bin/env node
// EXAMPLE step program (proc1 in the demo): "converts" raw samples (bytes) to text lines
// of 16-bit little-endian values, standing in for the experiment's real converter.
import { readFile, writeFile } from 'node:fs/promises';
import { applyFaults } from './fault-switch.mjs';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: convert.mjs INPUT OUTPUT');
  process.exit(2);
}
await applyFaults('convert', input);
const raw = await readFile(input);
const values = [];
for (let i = 0; i + 1 < raw.length; i += 2) values.push(raw.readUInt16LE(i));
await writeFile(output, `${values.join('\n')}\n`);
