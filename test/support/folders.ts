import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();

/**
 * A fresh folder under the system's temporary folder, removed once the whole test run ends
 * (by the root hook below), so that the processes a test leaves for its `after` can still write
 * to it until then.
 */
export function testFolder(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Removes every folder made by testFolder; returns how many. */
export function removeTestFolders(): number {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  const count = made.size;
  made.clear();
  return count;
}

/** Mocha root hooks (loaded with `--require`, see .mocharc.json). */
export const mochaHooks = {
  afterAll(): void {
    removeTestFolders();
  },
};
