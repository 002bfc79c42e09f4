/** Deleting a `_users` account (the bench's own agent account at the end of its run). Needs the server admin. */
import { MeshError } from '../core/errors.js';
import type { Database } from './database.js';

const USER_PREFIX = 'org.couchdb.user:';

/** Deletes the account `name` from `users` (the `_users` database); nothing when it does not exist. */
export async function deleteAccount(users: Database, name: string): Promise<void> {
  const id = `${USER_PREFIX}${name}`;
  const account = await users.get<{ _rev: string }>(id);
  if (!account) return;
  try {
    await users.request(`delete account ${name}`, { method: 'DELETE', doc: id, qs: { rev: account._rev } });
  } catch (error) {
    if (!(error instanceof MeshError && error.code === 'NOT_FOUND')) throw error;
  }
}
