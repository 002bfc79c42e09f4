/**
 * Failures of a step that come from the configuration, not from the document: a template the
 * loader would refuse (a config built without it), an output directory that cannot be made, a
 * program that is not there. Such a failure never marks the document bad (terminal) and burns
 * no retries: the step goes straight to `<step> failed`, and `mesh retry` makes it ready again
 * once the configuration is fixed.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { MeshError, errorMessage } from '../core/errors.js';

/** Every reason recorded for such a failure starts with this. */
export const CONFIGURATION = 'configuration:';

export function isConfigurationFault(error: unknown): boolean {
  return error instanceof MeshError && error.code === 'CONFIG_INVALID';
}

export function configurationFault(what: string, cause?: unknown): MeshError {
  return new MeshError(
    'CONFIG_INVALID',
    `${CONFIGURATION} ${what}; fix the mesh config (or the site), then mesh retry the documents`,
    cause === undefined ? {} : { cause },
  );
}

/** A regular file with an execute bit that this process may execute (root passes access() for any execute bit, or none on some systems). */
async function executable(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile() || (info.mode & 0o111) === 0) return false;
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Throws a configuration fault unless `program` (argv[0] of a step) names an executable file,
 * looked up in PATH as the operating system does when it has no "/". Checked before the
 * process is started, whatever starts it.
 */
export async function checkProgram(program: string, env: NodeJS.ProcessEnv, cwd: string = process.cwd()): Promise<void> {
  if (program.includes('/')) {
    if (await executable(isAbsolute(program) ? program : resolve(cwd, program))) return;
  } else {
    const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
    for (const dir of dirs) if (await executable(join(isAbsolute(dir) ? dir : resolve(cwd, dir), program))) return;
  }
  throw configurationFault(`the step's program ${JSON.stringify(program)} is not an executable file${program.includes('/') ? '' : ' in PATH'}`);
}

/** The output folder of a step could not be made: the config's `out` (or the site's storage) is wrong. */
export function outputFolderFault(folder: string, cause: unknown): MeshError {
  return configurationFault(`cannot create the output folder ${JSON.stringify(folder)} of the step's out: ${errorMessage(cause)}`, cause);
}
