/**
 * The one follower of a database's `_changes` feed (longpoll with a Mango selector, which works
 * the same on CouchDB and the embedded server and survives proxies that cut idle streams).
 * Agents follow it for work, the status page for "something changed".
 */
import { type BackoffPolicy, backoffDelay } from '../core/backoff.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import type { FeedCheckpoint } from './checkpoints.js';
import type { Database } from './database.js';

export const LONGPOLL_MS = 25_000;
const FEED_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 15_000, jitter: 0.3 };
/** A restart replays at most this much of the feed; saving on every batch would double the writes under load. */
const CHECKPOINT_EVERY_MS = 5000;
/**
 * A busy feed (one answer per write batch) is asked again at most this often: on Apache
 * CouchDB each `_changes` request costs about as much as a small write, and waiting this long
 * lets the changes of several writes come back in one answer. A quiet feed is unaffected: its
 * longpoll is already waiting when a change arrives.
 */
const BUSY_FEED_GAP_MS = 25;

export interface FollowOptions<D> {
  selector: object;
  /** Where to start: a sequence, or `now`. */
  since: string | number;
  includeDocs?: boolean;
  /** Each batch of changes (documents when `includeDocs`, deleted ones left out). */
  onChanges: (docs: D[], count: number) => void;
  /**
   * After the feed failed: `resume` goes on from the last sequence read (nothing is missed);
   * `now` starts again from the present, for a reader that re-reads everything anyway.
   */
  afterFailure: 'resume' | 'now';
  /** Called once when the feed fails after working, and once when it works again. */
  onOutage?: (state: 'down' | 'up', error?: unknown) => void;
  checkpoint?: FeedCheckpoint;
  logger: Logger;
  /** For the logs: whose feed this is. */
  what: string;
  signal: AbortSignal;
}

/** Follows the feed until `signal` aborts; failures are retried with backoff, never thrown. */
export async function followChanges<D>(db: Database, options: FollowOptions<D>): Promise<void> {
  const { signal } = options;
  let since = options.since;
  let saved = since;
  let savedAt = 0;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const asked = performance.now();
      const batch = await db.changes<D>(since, options.selector, { timeoutMs: LONGPOLL_MS, includeDocs: options.includeDocs ?? false, limit: 500, signal });
      if (failures > 0) options.onOutage?.('up');
      failures = 0;
      since = batch.last_seq;
      if (batch.results.length > 0)
        options.onChanges(
          batch.results.flatMap((r) => (r.doc && !r.deleted ? [r.doc] : [])),
          batch.results.length,
        );
      if (options.checkpoint && since !== saved && Date.now() - savedAt >= CHECKPOINT_EVERY_MS) {
        saved = since;
        savedAt = Date.now();
        await options.checkpoint.save(since, new Date());
      }
      const early = asked + BUSY_FEED_GAP_MS - performance.now();
      if (batch.results.length > 0 && early > 0) await sleep(early, signal);
    } catch (error) {
      if (signal.aborted) return;
      failures++;
      if (options.afterFailure === 'now') since = 'now';
      if (failures === 1) options.onOutage?.('down', error);
      if (failures === 1 || failures % 10 === 0) options.logger.warn({ failures }, `changes feed of ${options.what}: ${errorMessage(error)}; retrying`);
      await sleep(backoffDelay(failures, FEED_BACKOFF), signal);
    }
  }
}
