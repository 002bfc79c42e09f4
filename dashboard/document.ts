/** One document as the page shows it: its records, its revisions on every server, and where to go next. */
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError, errorMessage } from '../core/errors.js';
import { type Progress, describeProgress } from '../core/progress.js';
import { type OpenDatabase, distinctServers } from '../coordinator/servers.js';
import { publicUrl } from './databases.js';
import { fromFirstReachable, readingOrder } from './snapshot.js';

const REVS_SHOWN = 20;
const SEARCH_LIMIT = 20;
const ID_PATTERN = /^[^_][\s\S]{0,500}$/;

export interface ServerCopy {
  site: string;
  url: string;
  reachable: boolean;
  error?: string;
  found: boolean;
  rev?: string;
  status?: string;
  revs_info?: Array<{ rev: string; status: string }>;
  conflicts?: string[];
}

export interface Neighbours {
  prev_file?: string;
  next_file?: string;
  prev_run?: string;
  next_run?: string;
}

export interface DocumentView {
  id: string;
  doc: DaqDocument | null;
  /** The document's state in words (core/progress.ts), at the time it was read. */
  state: Progress | null;
  /** The server `doc` was read from. */
  read_from: string | null;
  servers: ServerCopy[];
  nav: Neighbours;
}

/** Rejects ids that could address something other than a data document (`_design/…`, `_local/…`, huge strings). */
export function checkDocumentId(id: unknown): string {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) throw new MeshError('BAD_INPUT', 'a document id is 1–500 characters and does not start with "_"');
  return id;
}

async function copyOn(config: MeshConfig, open: OpenDatabase, id: string): Promise<Array<ServerCopy & { doc?: DaqDocument }>> {
  return Promise.all(
    distinctServers(config).map(async (site) => {
      const base = { site: site.name, url: publicUrl(site.server) };
      try {
        const doc = await open(site).get<DaqDocument & { _revs_info?: Array<{ rev: string; status: string }> }>(id, { revs_info: true, conflicts: true });
        if (!doc) return { ...base, reachable: true, found: false };
        const { _revs_info: revs, ...rest } = doc;
        return {
          ...base,
          reachable: true,
          found: true,
          rev: doc._rev,
          status: doc.status,
          revs_info: (revs ?? []).slice(0, REVS_SHOWN),
          conflicts: doc._conflicts ?? [],
          doc: rest as DaqDocument,
        };
      } catch (error) {
        return { ...base, reachable: false, found: false, error: errorMessage(error) };
      }
    }),
  );
}

/** The documents before and after `doc` in (run, file number) order, and the first files of the neighbouring runs. */
export async function neighbours(db: Database, run: string, file: number): Promise<Neighbours> {
  const [prevFile, nextFile, prevRunLast, nextRunFirst] = await Promise.all([
    files.adjacentFile(db, run, file, 'previous'),
    files.adjacentFile(db, run, file, 'next'),
    files.fileAtRun(db, run, 'before'),
    files.fileAtRun(db, run, 'after'),
  ]);
  const prevRunFirst = prevRunLast ? await files.fileAtRun(db, prevRunLast.run as string, 'start') : undefined;
  return { prev_file: prevFile?.doc, next_file: nextFile?.doc, prev_run: prevRunFirst?.doc, next_run: nextRunFirst?.doc };
}

export async function documentView(config: MeshConfig, open: OpenDatabase, id: string, now = new Date()): Promise<DocumentView> {
  checkDocumentId(id);
  const copies = await copyOn(config, open, id);
  const order = readingOrder(config).map((s) => s.name);
  const best = [...copies].sort((a, b) => order.indexOf(a.site) - order.indexOf(b.site)).find((c) => c.doc);
  const doc = best?.doc ?? null;
  let nav: Neighbours = {};
  if (doc && typeof doc.run_name === 'string' && typeof doc.file_number === 'number') {
    const site = readingOrder(config).find((s) => s.name === best?.site);
    if (site) nav = await neighbours(open(site), doc.run_name, doc.file_number).catch(() => ({}));
  }
  return {
    id,
    doc,
    state: doc ? describeProgress(doc, config, now) : null,
    read_from: best?.site ?? null,
    servers: copies.map(({ doc: _doc, ...copy }) => copy),
    nav,
  };
}

/** The first file of `run` (or of the first run after it): "jump to a run". */
export async function firstOfRun(config: MeshConfig, open: OpenDatabase, run: string): Promise<string | null> {
  const result = await fromFirstReachable(readingOrder(config), open, async (db) => (await files.firstFileOf(db, run))?.doc ?? null);
  if ('error' in result) throw new MeshError('SERVER_UNREACHABLE', `no server answered: ${result.error}`);
  return result.value;
}

/** Documents whose file name starts with `prefix` (a range over a view, at most SEARCH_LIMIT). */
export async function searchFiles(config: MeshConfig, open: OpenDatabase, prefix: string): Promise<Array<{ doc: string; name: string }>> {
  if (prefix.length === 0 || prefix.length > 200) throw new MeshError('BAD_INPUT', 'the search text is 1–200 characters');
  const result = await fromFirstReachable(readingOrder(config), open, (db) => files.filesNamed(db, prefix, SEARCH_LIMIT));
  if ('error' in result) throw new MeshError('SERVER_UNREACHABLE', `no server answered: ${result.error}`);
  return result.value;
}
