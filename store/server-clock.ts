/**
 * A server's clock as its answers' `Date` header gives it (RFC 9110: whole seconds), bracketed by
 * the local clock before and after the request, so that a caller can tell how far apart the two
 * clocks are at least. One `GET /` on the server itself, which CouchDB answers to anyone.
 */
import type { Database } from './database.js';

export interface ServerClock {
  /** The server's `Date` header, or undefined when it sent none (or one that is no date). */
  date?: Date;
  /** Local time (ms) just before the request was sent and just after its headers arrived. */
  sentAt: number;
  receivedAt: number;
  /** What `GET /` answered (CouchDB's welcome: `couchdb`, `version`, `vendor`…). */
  welcome: Record<string, unknown>;
}

/** `server` must name the server itself (database `''`). */
export async function serverClock(server: Database): Promise<ServerClock> {
  let date: Date | undefined;
  let receivedAt = 0;
  const sentAt = Date.now();
  const welcome = await server.request<Record<string, unknown>>('server welcome', {
    shape: (a) => a !== null && typeof a === 'object' && !Array.isArray(a),
    onHeaders: (headers) => {
      receivedAt = Date.now();
      const parsed = Date.parse(headers.get('date') ?? '');
      date = Number.isNaN(parsed) ? undefined : new Date(parsed);
    },
  });
  return { date, sentAt, receivedAt: receivedAt || Date.now(), welcome };
}

/**
 * The bounds of (server clock − local clock) in ms: the header's time is the server's clock
 * truncated to the second somewhere between `sentAt` and `receivedAt`.
 */
export function clockOffsetBounds(clock: ServerClock): { low: number; high: number } | undefined {
  if (!clock.date) return undefined;
  const server = clock.date.getTime();
  return { low: server - clock.receivedAt, high: server + 1000 - clock.sentAt };
}
