#!/usr/bin/env node
// After `npm pack`: the npm-shrinkwrap.json that prepack.mjs copied from package-lock.json goes
// again, so that the checkout keeps one lockfile.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

rmSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'npm-shrinkwrap.json'), { force: true });
