#!/usr/bin/env node
// EXAMPLE step program (proc2 in the demo): summary statistics of a converted file as JSON.
import { readFile, writeFile } from 'node:fs/promises';
import { applyFaults } from './fault-switch.mjs';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: analyse.mjs INPUT OUTPUT');
  process.exit(2);
}
await applyFaults('analyse', input);
const values = (await readFile(input, 'utf8')).split('\n').filter(Boolean).map(Number);
const n = values.length;
const mean = n ? values.reduce((a, b) => a + b, 0) / n : 0;
const variance = n ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / n : 0;
await writeFile(output, `${JSON.stringify({ samples: n, mean, rms: Math.sqrt(variance), max: n ? Math.max(...values) : null })}\n`);
