/**
 * CouchDB 3's checks of request input that express-pouchdb skips (issue 9, item 7): where it
 * went on with garbage (a `since` it answered as if valid, a `startkey` that is not JSON, an
 * id-less document it silently dropped) or threw (a 500), the embedded server answers what
 * Apache CouchDB answers. Status codes, `error` and `reason` follow CouchDB's chttpd_db.erl,
 * couch_mrview_http.erl, fabric_view_changes.erl and couch_doc.erl.
 */
import { randomUUID } from 'node:crypto';

export class BadRequest extends Error {
  constructor(
    readonly reason: string,
    readonly error: 'bad_request' | 'query_parse_error' | 'illegal_docid' = 'bad_request',
  ) {
    super(reason);
  }
}

/** Deeper bodies overflow the stack inside PouchDB (a 500 from 4,500 levels); Apache CouchDB stores them. */
export const MAX_NESTING = 3500;

/** Throws when `value` nests arrays or objects deeper than MAX_NESTING (walked without recursion). */
export function checkNesting(value: unknown): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  // Bounded: every value of the parsed body is visited once.
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (item === null || typeof item !== 'object') continue;
    if (depth > MAX_NESTING)
      throw new BadRequest(
        `the JSON body is nested deeper than ${MAX_NESTING} levels, more than the embedded server can store (Apache CouchDB has no such limit)`,
      );
    for (const child of Object.values(item as object)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/** A 32-hex-digit id, the form of CouchDB's default `uuids` algorithm. */
export function newDocumentId(): string {
  return randomUUID().replace(/-/g, '');
}

/**
 * `_bulk_docs`: as chttpd_db's handler — `docs` must be an array of objects, `new_edits` a
 * boolean, replicated documents must carry `_rev` or `_revisions`, a document without an id
 * gets a new one (PouchDB answered `{}` for it and stored nothing), an empty id refuses the
 * whole request (CouchDB 3.5: 400 `illegal_docid`).
 */
export function prepareBulkDocs(body: Record<string, unknown>): void {
  const docs = body.docs;
  if (docs === undefined) throw new BadRequest('POST body must include `docs` parameter.');
  if (!Array.isArray(docs)) throw new BadRequest('`docs` parameter must be an array.');
  const newEdits = body.new_edits ?? true;
  if (typeof newEdits !== 'boolean') throw new BadRequest('`new_edits` parameter must be a boolean.');
  for (const doc of docs) {
    if (!isObject(doc)) throw new BadRequest('Document must be a JSON object');
    if (!newEdits && doc._rev === undefined && doc._revisions === undefined)
      throw new BadRequest('When `new_edits: false`, the document needs `_rev` or `_revisions` specified');
    if (doc._id === '') throw new BadRequest(EMPTY_ID, 'illegal_docid');
  }
  for (const doc of docs as Array<Record<string, unknown>>) if (doc._id === undefined) doc._id = newDocumentId();
}

const EMPTY_ID = 'Document id must not be empty';

/** `POST /db`: a document without an id gets one of CouchDB's form (PouchDB's would be a dashed UUID). */
export function prepareNewDocument(doc: Record<string, unknown>): void {
  if (doc._id === '') throw new BadRequest(EMPTY_ID, 'illegal_docid');
  if (doc._id === undefined) doc._id = newDocumentId();
}

/** Other bodies CouchDB checks before use. */
export function checkBody(path: string, body: Record<string, unknown>): void {
  if (/\/_all_docs$/.test(path) && body.keys !== undefined && !Array.isArray(body.keys)) throw new BadRequest('`keys` body member must be an array.');
  // couch_mrview_util:get_view_keys
  if (/^\/[^/]+\/_design\/[^/]+\/_view\/[^/]+$/.test(path) && body.keys !== undefined && !Array.isArray(body.keys))
    throw new BadRequest('`keys` member must be an array.');
  if (/\/_bulk_get$/.test(path)) {
    if (body.docs === undefined) throw new BadRequest("Missing JSON list of 'docs'.");
    if (!Array.isArray(body.docs) || !body.docs.every(isObject)) throw new BadRequest('`docs` must be an array of JSON objects');
  }
  if (/\/_revs_diff$/.test(path)) {
    for (const revs of Object.values(body))
      if (!Array.isArray(revs) || !revs.every((r) => typeof r === 'string')) throw new BadRequest('Invalid list of revisions');
  }
}

type Query = Record<string, unknown>;

const one = (value: unknown): string | undefined => (Array.isArray(value) ? (value[value.length - 1] as string) : (value as string | undefined));
// CouchDB prints the value with Erlang's ~p: a string in double quotes.
const quoted = (value: string): string => JSON.stringify(value);

function nonNegativeInteger(value: string): number | undefined {
  return /^\d+$/.test(value) ? Number(value) : undefined;
}

/** `_changes` query parameters, as chttpd_db:parse_changes_query and fabric's since check. */
export function checkChangesQuery(query: Query): void {
  const feed = one(query.feed);
  if (feed !== undefined && !['normal', 'continuous', 'live', 'longpoll', 'eventsource'].includes(feed))
    throw new BadRequest('Supported `feed` types: normal, continuous, live, longpoll, eventsource');
  const since = one(query.since);
  // The embedded server's sequences are integers; `now` as in CouchDB.
  if (since !== undefined && since !== 'now' && !/^"?\d+"?$/.test(since)) throw new BadRequest("Malformed sequence supplied in 'since' parameter.");
  const limit = one(query.limit);
  if (limit !== undefined && nonNegativeInteger(limit) === undefined) {
    throw new BadRequest(/^-\d+$/.test(limit) ? 'The limit value should be a non-negative integer' : 'The limit parameter should be a non-negative integer');
  }
  const heartbeat = one(query.heartbeat);
  if (heartbeat !== undefined && heartbeat !== 'true') {
    if (!/^-?\d+$/.test(heartbeat)) throw new BadRequest('Invalid heartbeat value. Expecting a positive integer value (in milliseconds).');
    if (Number(heartbeat) <= 0) throw new BadRequest('The heartbeat value should be a positive integer (in milliseconds).');
  }
  const timeout = one(query.timeout);
  if (timeout !== undefined && nonNegativeInteger(timeout) === undefined) {
    throw new BadRequest(
      /^-\d+$/.test(timeout) ? 'The timeout value should be a non-negative integer' : 'The timeout parameter should be a non-negative integer',
    );
  }
}

const JSON_PARAMS = ['key', 'keys', 'startkey', 'start_key', 'endkey', 'end_key'];
const BOOLEAN_PARAMS = [
  'descending',
  'include_docs',
  'inclusive_end',
  'reduce',
  'group',
  'update_seq',
  'conflicts',
  'sorted',
  'attachments',
  'att_encoding_info',
];
const COUNT_PARAMS = ['limit', 'skip', 'group_level'];

/** View and `_all_docs` query parameters, as couch_mrview_http:parse_param. */
export function checkViewQuery(query: Query, allDocs: boolean): void {
  for (const name of JSON_PARAMS) {
    const value = one(query[name]);
    if (value === undefined) continue;
    try {
      JSON.parse(value);
    } catch {
      throw new BadRequest('invalid UTF-8 JSON');
    }
  }
  const keys = one(query.keys);
  if (allDocs && keys !== undefined && !Array.isArray(JSON.parse(keys))) throw new BadRequest('`keys` parameter must be an array.');
  for (const name of BOOLEAN_PARAMS) {
    const value = one(query[name]);
    if (value !== undefined && !/^(true|false)$/i.test(value)) throw new BadRequest(`Invalid boolean parameter: ${quoted(value)}`, 'query_parse_error');
  }
  for (const name of COUNT_PARAMS) {
    const value = one(query[name]);
    if (value === undefined) continue;
    if (!/^-?\d+$/.test(value)) throw new BadRequest(`Invalid value for integer: ${quoted(value)}`, 'query_parse_error');
    if (Number(value) < 0) throw new BadRequest(`Invalid value for positive integer: ${quoted(value)}`, 'query_parse_error');
  }
}
