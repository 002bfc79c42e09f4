import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MeshError } from '../../core/errors.js';

/** One file `mesh deploy` writes under its output folder. */
export interface DeployFile {
  /** Relative to the output folder. */
  path: string;
  content: string;
  mode: number;
  /** Where it goes on the site's machine (absolute), or how it is installed (`crontab -e`, …). */
  installAs: string;
}

/**
 * Writes the files under `out`, which must be absent or empty unless `force` (then the files
 * deploy writes replace theirs; nothing else there is touched). Returns the absolute paths.
 */
export async function writeDeployFiles(out: string, files: readonly DeployFile[], force: boolean): Promise<string[]> {
  const root = resolve(out);
  if (existsSync(root) && readdirSync(root).length > 0 && !force)
    throw new MeshError('BAD_INPUT', `--out ${root} exists and is not empty: choose another folder, or pass --force to replace the files deploy writes there`);
  const written: string[] = [];
  for (const file of files) {
    const path = join(root, file.path);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, file.content, { mode: file.mode });
    await chmod(path, file.mode);
    written.push(path);
  }
  return written;
}
