import nano, { type ServerScope } from 'nano';
import { type BackoffPolicy, backoffDelay } from './backoff.js';
import { MeshError, errorMessage } from './errors.js';
import type { Logger } from './log.js';
import { sleep } from './sleep.js';
import { WriteBatcher } from './write-batcher.js';

export interface ServerCredentials {
  user: string;
  password: string;
}

/** How a call reacts to an unreachable server or a 5xx: fail at once, or back off and try again until aborted. */
export type RetryMode = 'never' | 'until-aborted';

export interface DatabaseOptions {
  url: string;
  database: string;
  credentials?: ServerCredentials;
  retry?: RetryMode;
  /** Coalesce concurrent `put`s into `_bulk_docs` requests (each document still a compare-and-set). */
  batchWrites?: boolean;
  signal?: AbortSignal;
  logger?: Logger;
  backoff?: BackoffPolicy;
}

const SERVER_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000, jitter: 0.3 };

/** Connects to a CouchDB-compatible server; credentials travel in a header, never in the URL. */
export function connectServer(url: string, credentials?: ServerCredentials): ServerScope {
  const headers: Record<string, string> = {};
  if (credentials) headers.Authorization = `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}`;
  return nano({ url, headers } as nano.Configuration);
}

/** Translates nano's errors into MeshError, keeping CouchDB's status and reason. */
export function toMeshError(error: unknown, what: string): MeshError {
  if (error instanceof MeshError) return error;
  const e = error as { statusCode?: number; error?: string; reason?: string; name?: string; message?: string };
  if (e?.name === 'AbortError') return new MeshError('ABORTED', `${what}: aborted`, { cause: error });
  const status = e?.statusCode;
  const reason = e?.reason ?? e?.message ?? errorMessage(error);
  if (!status) return new MeshError('SERVER_UNREACHABLE', `${what}: server unreachable (${reason})`, { cause: error });
  const code = status === 409 ? 'CONFLICT' : status === 404 ? 'NOT_FOUND' : status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : status >= 500 ? 'SERVER_ERROR' : 'BAD_INPUT';
  return new MeshError(code, `${what}: ${status} ${e.error ?? ''} ${reason}`.replace(/\s+/g, ' ').trim(), { cause: error, statusCode: status, reason });
}

function transient(error: MeshError): boolean {
  return error.code === 'SERVER_UNREACHABLE' || error.code === 'SERVER_ERROR' || error.statusCode === 429;
}

export interface ViewRow<V = unknown, D = unknown> {
  id?: string;
  key: unknown;
  value: V;
  doc?: D;
}

export interface ChangesResult<D = unknown> {
  results: Array<{ id: string; seq: string | number; deleted?: boolean; doc?: D }>;
  last_seq: string | number;
}

/**
 * One database on one server: the few operations the project uses, each translated to
 * MeshError and, in `until-aborted` mode, retried with backoff through outages.
 */
export class Database {
  readonly url: string;
  readonly name: string;
  private readonly server: ServerScope;
  private readonly retry: RetryMode;
  private readonly signal?: AbortSignal;
  private readonly logger?: Logger;
  private readonly backoff: BackoffPolicy;
  private readonly batcher?: WriteBatcher;

  constructor(options: DatabaseOptions) {
    this.url = options.url;
    this.name = options.database;
    this.server = connectServer(options.url, options.credentials);
    this.retry = options.retry ?? 'never';
    this.signal = options.signal;
    this.logger = options.logger;
    this.backoff = options.backoff ?? SERVER_BACKOFF;
    if (options.batchWrites) this.batcher = new WriteBatcher((docs) => this.bulk(docs));
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (raw) {
        const error = toMeshError(raw, what);
        if (this.retry === 'never' || !transient(error) || this.signal?.aborted) throw error;
        const delay = backoffDelay(attempt, this.backoff);
        if (attempt === 1 || attempt % 10 === 0) this.logger?.warn({ attempt, delay_ms: delay }, `${error.message}; retrying`);
        if (!(await sleep(delay, this.signal))) throw new MeshError('ABORTED', `${what}: aborted while the server was unreachable`, { cause: error });
      }
    }
  }

  request<T>(what: string, options: { method?: string; path?: string; doc?: string; qs?: Record<string, unknown>; body?: unknown; signal?: AbortSignal }): Promise<T> {
    return this.call(what, () => this.server.request({ db: this.name, ...options, signal: options.signal ?? this.signal } as nano.RequestOptions) as Promise<T>);
  }

  /** Creates the database if it does not exist. */
  async ensure(): Promise<void> {
    try {
      await this.call(`create database ${this.name}`, () => this.server.db.create(this.name));
    } catch (error) {
      if (!(error instanceof MeshError && error.statusCode === 412)) throw error;
    }
  }

  async info(): Promise<{ doc_count: number; update_seq: string | number }> {
    return this.request('database info', { method: 'GET' });
  }

  /** The document, or undefined when it does not exist. */
  async get<D>(id: string, qs: Record<string, unknown> = {}): Promise<D | undefined> {
    try {
      return await this.request<D>(`get ${id}`, { doc: id, qs });
    } catch (error) {
      if (error instanceof MeshError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  /** Writes a document; its `_rev` makes the write a compare-and-set (409 → CONFLICT). */
  async put(doc: { _id: string; _rev?: string; [field: string]: unknown }): Promise<string> {
    if (this.batcher && !doc._id.startsWith('_')) return this.batcher.write(doc);
    const result = await this.request<{ rev: string }>(`write ${doc._id}`, { method: 'PUT', doc: doc._id, body: doc });
    return result.rev;
  }

  async bulk(docs: object[]): Promise<Array<{ id: string; rev?: string; error?: string; reason?: string }>> {
    return this.request('bulk write', { method: 'POST', path: '_bulk_docs', body: { docs } });
  }

  async allDocs<D>(qs: Record<string, unknown>, keys?: string[]): Promise<{ rows: Array<ViewRow<{ rev: string }, D> & { error?: string }> }> {
    return this.request('all documents', keys ? { method: 'POST', path: '_all_docs', qs, body: { keys } } : { path: '_all_docs', qs });
  }

  async view<V = unknown, D = unknown>(design: string, view: string, qs: Record<string, unknown> = {}): Promise<{ rows: ViewRow<V, D>[]; total_rows?: number }> {
    return this.request(`view ${design}/${view}`, { path: `_design/${design}/_view/${view}`, qs });
  }

  /** One longpoll of `_changes` filtered by a Mango selector; an empty result after `timeoutMs`. */
  async changes<D>(since: string | number, selector: object, options: { timeoutMs: number; includeDocs?: boolean; limit?: number; signal?: AbortSignal }): Promise<ChangesResult<D>> {
    return this.request('changes feed', {
      method: 'POST',
      path: '_changes',
      qs: { feed: 'longpoll', filter: '_selector', since, timeout: options.timeoutMs, include_docs: options.includeDocs ?? false, ...(options.limit ? { limit: options.limit } : {}) },
      body: { selector },
      signal: options.signal,
    });
  }

  async getLocal<D extends object>(name: string): Promise<(D & { _rev?: string }) | undefined> {
    return this.get<D & { _rev?: string }>(`_local/${name}`);
  }

  async putLocal(name: string, doc: { _rev?: string; [field: string]: unknown }): Promise<string> {
    return this.put({ ...doc, _id: `_local/${name}` });
  }
}
