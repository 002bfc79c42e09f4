/**
 * `_bulk_docs` answers in request order, as CouchDB's do: a client may match its rows by
 * position. PouchDB's plugins do not keep that order: the security plugin's bulkDocs wrapper
 * (pouchdb-bulkdocs-wrapper) passes the permitted documents on in the order their checks
 * finished, so under load a database member's answer came back shuffled (the conformance
 * suite's member test, once in a run of 600 tests). The rows are put back by document id.
 */
import type { NextFunction, Request, Response } from 'express';

interface Row {
  id?: unknown;
}

/** `rows` in the order of `docs` (matched by `_id`; rows left over fill, in their order, what no id matched). */
export function inRequestOrder(docs: readonly unknown[], rows: readonly Row[]): Row[] {
  // With new_edits=false the answer holds the refusals alone: nothing to match by position.
  if (rows.length !== docs.length) return [...rows];
  const byId = new Map<unknown, Row[]>();
  for (const row of rows) byId.set(row?.id, [...(byId.get(row?.id) ?? []), row]);
  const matched = docs.map((doc) => {
    const id = (doc as { _id?: unknown } | null)?._id;
    return id === undefined ? undefined : byId.get(id)?.shift();
  });
  const used = new Set(matched);
  const rest = rows.filter((row) => !used.has(row));
  return matched.map((row) => row ?? (rest.shift() as Row));
}

/** Express middleware: rewrites the answer of `POST /<db>/_bulk_docs` into request order. */
export function bulkDocsInRequestOrder(req: Request, res: Response, next: NextFunction): void {
  if (req.method !== 'POST' || !/^\/[^/]+\/_bulk_docs\/?$/.test(req.path)) return next();
  // The ids as requested (jsonBodyGuard parsed the body and gave every document one): the
  // plugins below replace the list of documents as they filter and reorder it.
  const listed = (req.body as { docs?: unknown } | undefined)?.docs;
  const docs = Array.isArray(listed) ? listed.map((doc) => ({ _id: (doc as { _id?: unknown } | null)?._id })) : undefined;
  const send = res.send.bind(res);
  res.send = (body?: unknown) => {
    if (res.statusCode === 201 && docs && (Buffer.isBuffer(body) || typeof body === 'string')) {
      try {
        const rows = JSON.parse(String(body)) as unknown;
        if (Array.isArray(rows)) return send(Buffer.from(JSON.stringify(inRequestOrder(docs, rows as Row[]))));
      } catch {
        // Not JSON: answered as it is.
      }
    }
    return send(body);
  };
  next();
}
