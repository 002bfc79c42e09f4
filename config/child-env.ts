/**
 * The environment of a helper program the mesh starts on a file (the ingest metadata program):
 * what a program needs to run, and nothing of the mesh's own — no MESH_* credentials, no
 * password files, no tokens the operator's shell happened to export.
 */

/** Variables kept from the mesh's environment; every other one is left out. */
const KEPT = Object.freeze(['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR']);

/** Where programs are looked up when the mesh itself runs without a PATH. */
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

export function helperEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of KEPT) {
    const value = env[name];
    if (value !== undefined) kept[name] = value;
  }
  return { ...kept, PATH: kept.PATH ?? DEFAULT_PATH };
}
