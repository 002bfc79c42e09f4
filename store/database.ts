import { type BackoffPolicy, backoffDelay } from '../core/backoff.js';
import type { UserContext } from '../core/roles.js';
import { type CouchTransport, couchRequest } from './http.js';
import { MeshError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { WriteBatcher } from './write-batcher.js';
import type { ViewContract } from '../couchapp/mesh-views.js';

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
  /** Longest time one request may take, headers and body (a longpoll adds its own wait). */
  timeoutMs?: number;
  /** Largest answer read from the server (default 256 MiB); a longer one is refused as BAD_RESPONSE. */
  maxAnswerBytes?: number;
}

const SERVER_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000, jitter: 0.3 };
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** Batched writes (an agent's claims and results): under load, requests start at least this far apart and carry more documents each (write-batcher.ts). */
const BATCHED_WRITE_GAP_MS = 10;
/** The largest answer read from a server by default: a page of documents near CouchDB's 8 MB limit fits. */
export const DEFAULT_MAX_ANSWER_BYTES = 256 * 1024 * 1024;
/** A longpoll answers by itself after its own timeout; the request may take that much longer. */
const LONGPOLL_MARGIN_MS = 30_000;

/** Credentials travel in a header, never in the URL (also the form a `_replicator` document carries them in). */
export function authorization(credentials?: ServerCredentials): Record<string, string> {
  if (!credentials) return {};
  return { Authorization: `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}` };
}

/** Any error as a MeshError (the transport already throws MeshErrors; this covers the rest). */
function toMeshError(error: unknown, what: string): MeshError {
  if (error instanceof MeshError) return error;
  return new MeshError('SERVER_UNREACHABLE', `${what}: ${errorMessage(error)}`, { cause: error });
}

/** Worth trying again later: the server is down, overloaded, or a proxy in front of it answered garbage. */
function transient(error: MeshError): boolean {
  return error.code === 'SERVER_UNREACHABLE' || error.code === 'SERVER_ERROR' || error.code === 'BAD_RESPONSE' || error.statusCode === 429;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
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
  /** The account requests are made as (CouchDB's `userCtx.name`), null without credentials. */
  readonly user: string | null;
  private readonly transport: CouchTransport;
  private readonly retry: RetryMode;
  private readonly signal?: AbortSignal;
  private readonly logger?: Logger;
  private readonly backoff: BackoffPolicy;
  private readonly batcher?: WriteBatcher;

  constructor(options: DatabaseOptions) {
    this.url = options.url;
    this.name = options.database;
    this.user = options.credentials?.user ?? null;
    this.transport = {
      url: options.url.replace(/\/+$/, ''),
      database: options.database,
      headers: authorization(options.credentials),
      timeoutMs: options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxBytes: options.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES,
    };
    this.retry = options.retry ?? 'never';
    this.signal = options.signal;
    this.logger = options.logger;
    this.backoff = options.backoff ?? SERVER_BACKOFF;
    if (options.batchWrites) this.batcher = new WriteBatcher((docs) => this.bulk(docs), 200, 2, BATCHED_WRITE_GAP_MS);
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

  /**
   * One request; `shape` says whether a 2xx answer is what the call needs (else BAD_RESPONSE,
   * retried like a 5xx: a proxy or another service answered in the server's place).
   */
  request<T>(
    what: string,
    options: {
      method?: string;
      path?: string;
      doc?: string;
      qs?: Record<string, unknown>;
      body?: unknown;
      signal?: AbortSignal;
      timeoutMs?: number;
      shape?: (answer: T) => boolean;
      onHeaders?: (headers: Headers) => void;
    },
  ): Promise<T> {
    const { timeoutMs, shape, ...request } = options;
    const transport = timeoutMs === undefined ? this.transport : { ...this.transport, timeoutMs };
    return this.call(what, async () => {
      const answer = await couchRequest<T>(transport, { ...request, signal: options.signal ?? this.signal }, what);
      if (shape && !shape(answer))
        throw new MeshError('BAD_RESPONSE', `${what}: the server's answer has not the expected shape: ${String(JSON.stringify(answer)).slice(0, 120)}`);
      return answer;
    });
  }

  /** Deletes the database (all its documents); nothing when it does not exist. */
  async destroy(): Promise<void> {
    try {
      await this.request(`delete database ${this.name}`, { method: 'DELETE' });
    } catch (error) {
      if (!(error instanceof MeshError && error.code === 'NOT_FOUND')) throw error;
    }
  }

  /** Creates the database if it does not exist. */
  async ensure(): Promise<void> {
    try {
      await this.request(`create database ${this.name}`, { method: 'PUT' });
    } catch (error) {
      if (!(error instanceof MeshError && error.statusCode === 412)) throw error;
    }
  }

  async info(): Promise<{ doc_count: number; update_seq: string | number }> {
    return this.request('database info', {
      method: 'GET',
      shape: (a) => isObject(a) && (typeof a.update_seq === 'string' || typeof a.update_seq === 'number'),
    });
  }

  /** The document, or undefined when it does not exist. */
  async get<D>(id: string, qs: Record<string, unknown> = {}, options: { signal?: AbortSignal } = {}): Promise<D | undefined> {
    try {
      return await this.request<D>(`get ${id}`, { doc: id, qs, signal: options.signal, shape: (a) => a !== null && typeof a === 'object' });
    } catch (error) {
      if (error instanceof MeshError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  /**
   * Writes a document; its `_rev` makes the write a compare-and-set (409 → CONFLICT). With a
   * `signal`, the write is sent alone (not batched) and ends with that signal instead of the
   * database's own.
   */
  async put<D extends { _id: string; _rev?: string }>(doc: D, options: { signal?: AbortSignal } = {}): Promise<string> {
    if (this.batcher && !options.signal && !doc._id.startsWith('_')) return this.batcher.write(doc);
    const result = await this.request<{ rev: string }>(`write ${doc._id}`, {
      method: 'PUT',
      doc: doc._id,
      body: doc,
      signal: options.signal,
      shape: (a) => isObject(a) && typeof a.rev === 'string',
    });
    return result.rev;
  }

  async bulk(docs: object[]): Promise<Array<{ id: string; rev?: string; error?: string; reason?: string }>> {
    return this.request('bulk write', {
      method: 'POST',
      path: '_bulk_docs',
      body: { docs },
      shape: (a) => Array.isArray(a) && a.length === docs.length && a.every(isObject),
    });
  }

  async allDocs<D>(qs: Record<string, unknown>, keys?: string[]): Promise<{ rows: Array<ViewRow<{ rev: string }, D> & { error?: string }> }> {
    type Answer = { rows: Array<ViewRow<{ rev: string }, D> & { error?: string }> };
    const shape = (a: Answer) => isObject(a) && Array.isArray(a.rows) && a.rows.every(isObject);
    return this.request<Answer>('all documents', keys ? { method: 'POST', path: '_all_docs', qs, body: { keys }, shape } : { path: '_all_docs', qs, shape });
  }

  /** The map rows of a view of `_design/mesh`, named by its contract (couchapp/mesh-views.ts) and typed as its map emits them. */
  async rows<K, V, D = unknown>(contract: ViewContract<K, V>, qs: Record<string, unknown> = {}): Promise<Array<ViewRow<V, D> & { id: string; key: K }>> {
    return (await this.query<ViewRow<V, D> & { id: string; key: K }>(contract, { ...qs, ...(contract.reduce ? { reduce: false } : {}) })).rows;
  }

  /** The reduced rows of a view (`_count`/`_sum` give numbers, `_stats` a Stats object); one row without grouping. */
  async reduced<R = number>(contract: ViewContract<unknown, unknown>, qs: Record<string, unknown> = {}): Promise<Array<{ key: unknown; value: R }>> {
    if (!contract.reduce) throw new MeshError('BAD_INPUT', `view ${contract.name} has no reduce`);
    return (await this.query<{ key: unknown; value: R }>(contract, qs)).rows;
  }

  private query<Row>(contract: ViewContract<unknown, unknown>, qs: Record<string, unknown>): Promise<{ rows: Row[] }> {
    const { design, name } = contract;
    return this.request(`view ${design}/${name}`, {
      path: `_design/${design}/_view/${name}`,
      qs,
      shape: (a) => isObject(a) && Array.isArray(a.rows) && a.rows.every(isObject),
    });
  }

  /** One longpoll of `_changes` filtered by a Mango selector; an empty result after `timeoutMs`. */
  async changes<D>(
    since: string | number,
    selector: object,
    options: { timeoutMs: number; includeDocs?: boolean; limit?: number; signal?: AbortSignal },
  ): Promise<ChangesResult<D>> {
    return this.request<ChangesResult<D>>('changes feed', {
      method: 'POST',
      path: '_changes',
      qs: {
        feed: 'longpoll',
        filter: '_selector',
        since,
        timeout: options.timeoutMs,
        include_docs: options.includeDocs ?? false,
        ...(options.limit ? { limit: options.limit } : {}),
      },
      body: { selector },
      signal: options.signal,
      timeoutMs: options.timeoutMs + LONGPOLL_MARGIN_MS,
      shape: (a) => isObject(a) && Array.isArray(a.results) && a.results.every(isObject) && (typeof a.last_seq === 'string' || typeof a.last_seq === 'number'),
    });
  }

  /**
   * Who the server takes this connection's credentials for (`GET /_session`): name null and no
   * roles when it has none or refuses them silently (an anonymous session).
   */
  async session(): Promise<UserContext> {
    type Answer = { userCtx?: { name?: unknown; roles?: unknown } };
    // The session is the server's, whatever database this object names.
    const server = { ...this.transport, database: '' };
    const answer = await this.call('session', async () => {
      const a = await couchRequest<Answer>(server, { path: '_session', signal: this.signal }, 'session');
      if (!isObject(a) || !isObject(a.userCtx))
        throw new MeshError('BAD_RESPONSE', `session: the server's answer has not the expected shape: ${String(JSON.stringify(a)).slice(0, 120)}`);
      return a;
    });
    const ctx = answer.userCtx ?? {};
    const roles = Array.isArray(ctx.roles) ? ctx.roles.filter((r): r is string => typeof r === 'string') : [];
    return { name: typeof ctx.name === 'string' ? ctx.name : null, roles };
  }

  async getLocal<D extends object>(name: string): Promise<(D & { _rev?: string }) | undefined> {
    return this.get<D & { _rev?: string }>(`_local/${name}`);
  }

  async putLocal(name: string, doc: { _rev?: string; [field: string]: unknown }): Promise<string> {
    return this.put({ ...doc, _id: `_local/${name}` });
  }
}
