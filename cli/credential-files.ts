/**
 * Credentials handed to a process started elsewhere (lyon's, over SSH): as the user and a
 * password file, never the password, since whatever travels to the remote side is part of a
 * command line. A password given in the environment is written to a 0600 file first.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentialPrefix } from '../config/credentials.js';

/**
 * `MESH_<SITE>_USER` and `MESH_<SITE>_PASSWORD_FILE` for each of `sites` whose user is set in
 * `env`; a password from `MESH_<SITE>_PASSWORD` goes into `<dir>/<site>.password` (mode 0600).
 */
export async function credentialFileEnv(sites: readonly string[], env: NodeJS.ProcessEnv, dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const site of new Set(sites)) {
    const prefix = credentialPrefix(site);
    const user = env[`${prefix}_USER`];
    if (!user) continue;
    let file = env[`${prefix}_PASSWORD`] === undefined ? env[`${prefix}_PASSWORD_FILE`] : undefined;
    const password = env[`${prefix}_PASSWORD`];
    if (password !== undefined) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      file = join(dir, `${site.replace(/[^A-Za-z0-9_-]/g, '_')}.password`);
      await writeFile(file, `${password}\n`, { mode: 0o600 });
      await chmod(file, 0o600);
    }
    if (!file) continue;
    out[`${prefix}_USER`] = user;
    out[`${prefix}_PASSWORD_FILE`] = file;
  }
  return out;
}
