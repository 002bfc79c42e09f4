/**
 * validate_doc_update for the embedded server, in place of express-pouchdb's
 * pouchdb-validation, which differs from CouchDB where replication depends on it:
 * - it overwrote every incoming document's `_revisions` with the stored winner's, so a
 *   replicated conflicting branch (`new_edits: false`) was silently grafted onto the existing
 *   path and lost — no conflict ever reached a second server;
 * - it handed the function the current winner as `oldDoc`, where CouchDB hands the revision
 *   the write descends from;
 * - it re-read and re-compiled every design document on every write.
 * Here the document is never modified, `oldDoc` is the parent revision of a replicated write,
 * and the functions are compiled once per design-document revision.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Doc = { _id: string; _rev?: string; _deleted?: boolean; _revisions?: { start: number; ids: string[] }; [key: string]: unknown };
interface WrappedDb {
  get(id: string, opts?: Record<string, unknown>): Promise<Doc>;
  allDocs(opts: Record<string, unknown>): Promise<{ rows: Array<{ doc?: Doc }> }>;
}
interface WrapperArgs {
  base: WrappedDb;
  doc: Doc;
  docs: Doc[];
  options: { new_edits?: boolean; userCtx?: unknown; secObj?: unknown };
}
type Wrapper = (orig: () => Promise<unknown>, args: WrapperArgs) => Promise<unknown>;

const wrappers = require('pouchdb-wrappers') as { installWrapperMethods(db: unknown, api: Record<string, Wrapper>): void };

type Validator = (newDoc: Doc, oldDoc: Doc | null, userCtx: unknown, secObj: unknown) => void;

// express-pouchdb answers with status, error and reason from this shape.
const PouchPluginError = require('pouchdb-plugin-error') as new (opts: { status: number; name: string; message: string }) => Error;

function ValidationError(status: number, name: string, message: string): Error {
  return new PouchPluginError({ status, name, message });
}

const compiled = new Map<string, Validator>();

function compile(code: string): Validator {
  let fn = compiled.get(code);
  if (!fn) {
    // Written by the server's admins, as in CouchDB; the helpers CouchDB's query server offers.
    const factory = new Function('isArray', 'toJSON', 'log', 'sum', `"use strict"; return (${code.replace(/;\s*$/, '')});`);
    fn = factory(
      Array.isArray,
      JSON.stringify,
      () => {},
      (a: number[]) => a.reduce((x, y) => x + y, 0),
    ) as Validator;
    if (typeof fn !== 'function') throw ValidationError(500, 'compilation_error', 'validate_doc_update does not evaluate to a function');
    if (compiled.size > 200) compiled.clear();
    compiled.set(code, fn);
  }
  return fn;
}

/** The design documents' validators of one database, re-read only after a design document changed. */
class Validators {
  private current: Promise<Array<{ design: Doc; fn: Validator }>> | undefined;

  constructor(private readonly db: WrappedDb) {}

  invalidate(): void {
    this.current = undefined;
  }

  get(): Promise<Array<{ design: Doc; fn: Validator }>> {
    this.current ??= this.db
      .allDocs({ startkey: '_design/', endkey: '_design0', include_docs: true })
      .then(({ rows }) =>
        rows.flatMap((row) =>
          row.doc && typeof row.doc.validate_doc_update === 'string' ? [{ design: row.doc, fn: compile(row.doc.validate_doc_update) }] : [],
        ),
      );
    this.current.catch(() => this.invalidate());
    return this.current;
  }
}

/**
 * The revision a write descends from: for a replicated write the parent in `_revisions`; for an
 * interactive one the leaf named by `_rev`. As CouchDB, an interactive write that names no
 * leaf (a stale `_rev`, or none for a live document) is a 409 conflict before any validator
 * runs, so that a lost race reads as a conflict and not as the validator's refusal.
 */
async function previous(db: WrappedDb, doc: Doc, replicated: boolean): Promise<Doc | null> {
  if (replicated) {
    const parent = doc._revisions && doc._revisions.ids.length > 1 ? `${doc._revisions.start - 1}-${doc._revisions.ids[1]}` : undefined;
    return parent ? await db.get(doc._id, { rev: parent }).catch(() => null) : null;
  }
  const winner = await db.get(doc._id).catch(() => null);
  if (winner && winner._rev === doc._rev) return winner;
  if (doc._rev === undefined) {
    if (winner) throw conflict();
    return null;
  }
  // A losing branch may be edited too (that is how conflicts are resolved); it must be a leaf.
  const leaves = (await db.get(doc._id, { open_revs: 'all' }).catch(() => undefined)) as unknown as Array<{ ok?: Doc }> | undefined;
  if (leaves === undefined) return null;
  const leaf = leaves.find((l) => l.ok?._rev === doc._rev)?.ok;
  if (!leaf) throw conflict();
  return leaf;
}

function conflict(): Error {
  return ValidationError(409, 'conflict', 'Document update conflict.');
}

/**
 * As couch_db: design documents (and the stored `_security`) are written by database admins only,
 * whatever the path (`_bulk_docs` included). A write without a user context is the server's own.
 */
function requireDbAdmin(options: WrapperArgs['options']): void {
  const user = options.userCtx as { name?: string | null; roles?: string[] } | undefined;
  if (!user || !Array.isArray(user.roles) || user.roles.includes('_admin')) return;
  const admins = ((options.secObj ?? {}) as { admins?: { names?: unknown; roles?: unknown } }).admins ?? {};
  const names = Array.isArray(admins.names) ? admins.names : [];
  const roles = Array.isArray(admins.roles) ? admins.roles : [];
  if ((user.name && names.includes(user.name)) || roles.some((r) => user.roles?.includes(r as string))) return;
  if (user.name === null || user.name === undefined) throw ValidationError(401, 'unauthorized', 'You are not a db or server admin.');
  throw ValidationError(403, 'forbidden', 'You are not a db or server admin.');
}

async function check(validators: Validators, db: WrappedDb, doc: Doc, options: WrapperArgs['options']): Promise<void> {
  if (doc._id.startsWith('_design/') || doc._id === '_local/_security') requireDbAdmin(options);
  if (doc._id.startsWith('_design/')) {
    validators.invalidate();
    return;
  }
  if (doc._id.startsWith('_local/')) return;
  const list = await validators.get();
  if (list.length === 0) return;
  const oldDoc = await previous(db, doc, options.new_edits === false);
  const userCtx = options.userCtx ?? { db: null, name: null, roles: ['_admin'] };
  const copy = JSON.parse(JSON.stringify(doc)) as Doc;
  for (const { design, fn } of list) {
    try {
      fn.call(design, copy, oldDoc, userCtx, options.secObj ?? {});
    } catch (error) {
      const e = error as { forbidden?: string; unauthorized?: string };
      if (e?.forbidden !== undefined) throw ValidationError(403, 'forbidden', String(e.forbidden));
      if (e?.unauthorized !== undefined) throw ValidationError(401, 'unauthorized', String(e.unauthorized));
      throw ValidationError(500, 'validation_error', String(error));
    }
  }
}

/**
 * `_bulk_docs`: the documents the validators refuse answer with their error, the others are
 * written; the answer keeps the order of the request, as CouchDB's does (pouchdb-bulkdocs-wrapper
 * put the refused ones first, so a client matching answers by position misread them).
 */
async function validateBulk(orig: () => Promise<unknown>, args: WrapperArgs, validate: (doc: Doc) => Promise<void>): Promise<unknown> {
  const docs = args.docs;
  const refused = await Promise.all(
    docs.map((doc) =>
      validate(doc).then(
        () => undefined,
        (error: Error & { id?: string }) => Object.assign(error, { id: doc._id }),
      ),
    ),
  );
  if (refused.every((error) => error === undefined)) return orig();
  args.docs = docs.filter((_, i) => refused[i] === undefined);
  const written = args.docs.length > 0 ? ((await orig()) as unknown[]) : [];
  // With new_edits=false the server answers nothing for written documents: the refusals alone.
  if (written.length !== args.docs.length) return [...refused.filter((error) => error !== undefined), ...written];
  // By id where the documents have one: PouchDB's answer is not always in request order. Here,
  // not only in bulk-order.ts: of a document written twice in one request, each write must get
  // its own row, which only the refusals' positions here tell apart.
  const byId = new Map<unknown, unknown[]>();
  for (const row of written) {
    const id = (row as { id?: unknown } | null)?.id;
    byId.set(id, [...(byId.get(id) ?? []), row]);
  }
  let next = 0;
  return refused.map((error, i) => {
    if (error) return error;
    const id = docs[i]._id;
    const rows = id === undefined ? undefined : byId.get(id);
    next++;
    return rows && rows.length > 0 ? rows.shift() : written[next - 1];
  });
}

/** Installs the validating put/post/remove/bulkDocs on one database. */
export function installValidation(db: WrappedDb): void {
  const validators = new Validators(db);
  const api: Record<string, Wrapper> = {
    put: (orig, args) => check(validators, args.base, args.doc, args.options ?? {}).then(orig),
    post: (orig, args) => check(validators, args.base, args.doc, args.options ?? {}).then(orig),
    remove: (orig, args) => check(validators, args.base, { ...args.doc, _deleted: true }, args.options ?? {}).then(orig),
    bulkDocs: (orig, args) => validateBulk(orig, args, (doc) => check(validators, args.base, doc, args.options ?? {})),
  };
  wrappers.installWrapperMethods(db, api);
}
