/** Creating or updating a mesh account in a server's `_users` database (what `mesh users add` does). */
import { update, writtenOrThrow } from '../store/update.js';
import type { Database } from '../store/database.js';
import { MeshError, isMeshError } from '../core/errors.js';

export const USER_PREFIX = 'org.couchdb.user:';

/** CouchDB refuses names starting with `_`; a `:` would break the `org.couchdb.user:` id and session cookies. */
export function checkAccountName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/.test(name)) {
    throw new MeshError(
      'BAD_INPUT',
      `account name ${JSON.stringify(name)} is not usable: expected 1–100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit`,
    );
  }
}

/**
 * Writes the account with exactly `roles` and the new password (the server hashes it).
 * Returns whether it was created or updated. Needs the server admin's credentials.
 */
export async function upsertAccount(users: Database, name: string, password: string, roles: readonly string[]): Promise<'created' | 'updated'> {
  const id = USER_PREFIX + name;
  type Account = { _id: string; _rev?: string; [field: string]: unknown };
  let existed = false;
  try {
    const result = await update<Account>(
      users,
      id,
      (current) => {
        existed = current !== undefined;
        return { write: { ...(current ?? {}), _id: id, name, type: 'user', roles: [...roles], password } };
      },
      { create: true },
    );
    writtenOrThrow(result, id);
    return existed ? 'updated' : 'created';
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN')) {
      throw new MeshError(
        error.code,
        `${error.message}: creating accounts needs the server admin's credentials (MESH_<SITE>_USER with MESH_<SITE>_PASSWORD or _PASSWORD_FILE)`,
        { cause: error },
      );
    }
    throw error;
  }
}
