/**
 * Password hashing of `_users` accounts as CouchDB 3 does it: PBKDF2 with a random salt and a
 * stored iteration count, the clear password never kept. A successful check is remembered (as
 * CouchDB's auth cache does) so that an agent's every request does not cost a full PBKDF2.
 */
import { createHash, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** CouchDB 3.5's defaults (`[chttpd_auth] iterations`, `pbkdf2_prf`). */
export const DEFAULT_ITERATIONS = 600_000;
const PRF = 'sha256';
const KEY_BYTES = 32;
const MAX_REMEMBERED = 1000;

/** The fields a hashed account carries instead of `password`. */
export interface PasswordHash {
  password_scheme: 'pbkdf2';
  pbkdf2_prf: string;
  iterations: number;
  salt: string;
  derived_key: string;
}

export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS): Promise<PasswordHash> {
  const salt = randomBytes(16).toString('hex');
  const key = await pbkdf2Async(password, salt, iterations, KEY_BYTES, PRF);
  return { password_scheme: 'pbkdf2', pbkdf2_prf: PRF, iterations, salt, derived_key: key.toString('hex') };
}

/** Hashes that were proven right, by a digest of (name, password, stored hash): never the password itself. */
const remembered = new Set<string>();

function rememberKey(name: string, password: string, stored: PasswordHash): string {
  return createHash('sha256')
    .update(JSON.stringify([name, password, stored.salt, stored.derived_key, stored.iterations]))
    .digest('hex');
}

function isHash(doc: Record<string, unknown>): doc is Record<string, unknown> & PasswordHash {
  return (
    doc.password_scheme === 'pbkdf2' &&
    typeof doc.salt === 'string' &&
    typeof doc.derived_key === 'string' &&
    Number.isInteger(doc.iterations) &&
    (doc.iterations as number) > 0
  );
}

/** Whether `password` is the one hashed into the account document (false for a document without a usable hash). */
export async function verifyPassword(name: string, password: string, doc: Record<string, unknown>): Promise<boolean> {
  if (!isHash(doc)) return false;
  const key = rememberKey(name, password, doc);
  if (remembered.has(key)) return true;
  const prf = typeof doc.pbkdf2_prf === 'string' ? doc.pbkdf2_prf : 'sha1';
  if (prf !== 'sha256' && prf !== 'sha1' && prf !== 'sha512') return false;
  const expected = Buffer.from(doc.derived_key, 'hex');
  if (expected.length === 0) return false;
  const given = await pbkdf2Async(password, doc.salt, doc.iterations, expected.length, prf);
  const ok = timingSafeEqual(given, expected);
  if (ok) {
    if (remembered.size >= MAX_REMEMBERED) remembered.clear();
    remembered.add(key);
  }
  return ok;
}
