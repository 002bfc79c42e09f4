/**
 * What a server can do, probed once per server and remembered, so that callers ask
 * `capabilities.schedulerDocs` instead of guessing which kind of server they talk to.
 *
 * | capability | Apache CouchDB 3 | the embedded server |
 * |---|---|---|
 * | `schedulerDocs`: `GET /_scheduler/docs` answers (job state and error reason) | yes | no (404), unless a later version adds it |
 *
 * A probe that gets 404 learns "absent"; one that gets 2xx learns "present"; anything else
 * (unreachable, 401/403, 5xx) learns nothing and is thrown, so the next call probes again.
 */
import { isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

export interface ServerCapabilities {
  /** `GET /_scheduler/docs[/_replicator/<id>]` answers: replication state from the scheduler, else from `_replicator` documents. */
  readonly schedulerDocs: boolean;
}

/** Probes one server; `server` is a Database opened on the server itself (database `''`). */
export async function probeCapabilities(server: Database): Promise<ServerCapabilities> {
  try {
    await server.request('replication scheduler probe', { path: '_scheduler/docs', qs: { limit: 1 } });
    return { schedulerDocs: true };
  } catch (error) {
    if (isMeshError(error, 'NOT_FOUND')) return { schedulerDocs: false };
    throw error;
  }
}

/** Capabilities by server URL, each probed at most once while it answers. */
export class CapabilityCache {
  private readonly known = new Map<string, ServerCapabilities>();
  private readonly probing = new Map<string, Promise<ServerCapabilities>>();

  constructor(private readonly probe: (server: Database) => Promise<ServerCapabilities> = probeCapabilities) {}

  /** The server's capabilities; `learned` runs once, when they were first found out (to say so in the logs). */
  async of(server: Database, learned?: (found: ServerCapabilities) => void): Promise<ServerCapabilities> {
    const cached = this.known.get(server.url);
    if (cached) return cached;
    let pending = this.probing.get(server.url);
    if (!pending) {
      pending = this.probe(server).then(
        (found) => {
          this.known.set(server.url, found);
          this.probing.delete(server.url);
          learned?.(found);
          return found;
        },
        (error: unknown) => {
          this.probing.delete(server.url);
          throw error;
        },
      );
      this.probing.set(server.url, pending);
    }
    return pending;
  }

  /** What is known without probing (for tests and reports). */
  peek(url: string): ServerCapabilities | undefined {
    return this.known.get(url);
  }
}
