/**
 * The `_users` database as CouchDB 3 keeps it: one document per account,
 * `org.couchdb.user:NAME` with `{name, roles, type: "user"}`; a `password` sent in a write is
 * replaced by its PBKDF2 hash before the document is stored (couch_users_db's
 * before_doc_update), so no clear password ever reaches the disk. Who may read or write which
 * account document is decided in access.ts, in front of express-pouchdb.
 */
import { createRequire } from 'node:module';
import { hashPassword } from './passwords.js';

const require = createRequire(import.meta.url);

export const USERS_DB = '_users';
export const USER_PREFIX = 'org.couchdb.user:';

type Doc = { _id?: string; _deleted?: boolean; [key: string]: unknown };
type Wrapper = (orig: () => Promise<unknown>, args: { doc: Doc; docs: Doc[]; options?: { new_edits?: boolean } }) => Promise<unknown>;

const wrappers = require('pouchdb-wrappers') as { installWrapperMethods(db: unknown, api: Record<string, Wrapper>): void };
const PouchPluginError = require('pouchdb-plugin-error') as new (opts: { status: number; name: string; message: string }) => Error;

function forbidden(message: string): Error {
  return new PouchPluginError({ status: 403, name: 'forbidden', message });
}

/** The account document's checks (CouchDB's `_design/_auth` validate function), then the hashing. */
async function prepare(doc: Doc, iterations: number): Promise<void> {
  if (typeof doc._id !== 'string' || doc._id.startsWith('_design/') || doc._id.startsWith('_local/') || doc._deleted) return;
  if (doc.type !== 'user') throw forbidden('doc.type must be user');
  if (typeof doc.name !== 'string' || doc.name.length === 0) throw forbidden('doc.name is required');
  if (!Array.isArray(doc.roles) || !doc.roles.every((r) => typeof r === 'string')) throw forbidden('doc.roles must be an array of strings');
  if (doc._id !== USER_PREFIX + doc.name) throw forbidden(`Doc ID must be of the form ${USER_PREFIX}name`);
  if (doc.password === undefined || doc.password === null) return;
  if (typeof doc.password !== 'string' || doc.password.length === 0) throw forbidden('doc.password must be a non-empty string');
  const hash = await hashPassword(doc.password, iterations);
  delete doc.password;
  delete doc.password_sha;
  Object.assign(doc, hash);
}

/** Installs the hashing writes on the `_users` database. */
export function installUsersHashing(db: unknown, iterations: number): void {
  const api: Record<string, Wrapper> = {
    put: async (orig, args) => {
      await prepare(args.doc, iterations);
      return orig();
    },
    post: async (orig, args) => {
      await prepare(args.doc, iterations);
      return orig();
    },
    bulkDocs: async (orig, args) => {
      // A replicated write carries a stored hash, never a password: it is kept as it is.
      for (const doc of args.docs) await prepare(doc, iterations);
      return orig();
    },
  };
  wrappers.installWrapperMethods(db, api);
}

/** The account name of a `_users` document id, or undefined for any other id. */
export function accountName(docId: string): string | undefined {
  return docId.startsWith(USER_PREFIX) ? docId.slice(USER_PREFIX.length) : undefined;
}
