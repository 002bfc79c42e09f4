#!/usr/bin/env node
// Makes a fresh checkout runnable: installs npm dependencies when they are missing or stale,
// then compiles the TypeScript. Uses only Node's standard library, since nothing else exists yet.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const say = (line) => { if (!quiet) console.error(line); };

function run(argv) {
  const result = spawnSync(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] });
  if (result.status !== 0) {
    console.error(`setup: ${argv.join(' ')} failed with status ${result.status ?? result.signal}`);
    process.exit(result.status || 1);
  }
}

const marker = join(root, 'node_modules', '.package-lock.json');
const stale = !existsSync(marker) || statSync(join(root, 'package.json')).mtimeMs > statSync(marker).mtimeMs;
if (stale) {
  say('setup: installing npm dependencies');
  run(['npm', existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}
say('setup: compiling TypeScript');
run([join(root, 'node_modules', '.bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
