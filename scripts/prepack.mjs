#!/usr/bin/env node
// `npm pack` (and `npm publish`) run this first: the package carries the compiled JavaScript, so
// that installing it compiles nothing. Compiles the TypeScript, then removes compiled files whose
// source is gone (dist/ is never cleaned by tsc), so that none of them is packed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error(`prepack: tsc failed with status ${tsc.status ?? tsc.signal}`);
  process.exit(1);
}

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

let stale = 0;
for (const file of files(join(root, 'dist'))) {
  const source = relative(join(root, 'dist'), file).replace(/\.js(\.map)?$/, '.ts');
  if (source.endsWith('.ts') && !existsSync(join(root, source))) {
    rmSync(file);
    stale++;
  }
}
if (stale > 0) console.error(`prepack: removed ${stale} compiled files whose source is gone`);
