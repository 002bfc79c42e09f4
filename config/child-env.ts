/**
 * The environments of the programs the mesh starts. A helper program run on a file (the ingest
 * metadata program) gets what a program needs to run, and nothing of the mesh's own — no MESH_*
 * credentials, no password files, no tokens the operator's shell happened to export. A step
 * program gets the agent's environment (a site's setup: ROOT, Grid Engine…) without the mesh's
 * credentials: a step never needs to write to the database, so it is never given the means.
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

/** The credential variables of config/credentials.ts: `MESH_<NAME>_PASSWORD` and `MESH_<NAME>_PASSWORD_FILE`. */
const CREDENTIAL = /^MESH_[A-Za-z0-9_]+_PASSWORD(_FILE)?$/;

export function stepEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !CREDENTIAL.test(name)));
}
