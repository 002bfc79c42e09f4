import { MeshError } from '../core/errors.js';

export interface BulkResult {
  id: string;
  rev?: string;
  error?: string;
  reason?: string;
}

interface Pending {
  doc: { _id: string };
  resolve: (rev: string) => void;
  reject: (error: unknown) => void;
}

/**
 * Coalesces single-document writes into `_bulk_docs` requests. Each document in a bulk
 * request is still its own compare-and-set on `_rev` (a 409 comes back for that document
 * alone), so claims keep their meaning; the server just answers many of them per request.
 * Writes issued in the same tick, or while a request is in flight, share the next request.
 *
 * Under load, requests also start at least `minGapMs` apart: on Apache CouchDB a request
 * costs far more than a document in it (measured: a one-document `_bulk_docs` about 15× a
 * document of a 500-document one), so a busy agent's claims and results wait a few
 * milliseconds and share a request. A write after a quiet spell goes out at once.
 */
export class WriteBatcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  private immediate = false;
  private timer: NodeJS.Timeout | undefined;
  private lastSend = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly send: (docs: object[]) => Promise<BulkResult[]>,
    private readonly maxBatch = 200,
    private readonly maxInFlight = 2,
    private readonly minGapMs = 0,
  ) {}

  write(doc: { _id: string }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.queue.push({ doc, resolve, reject });
      this.schedule();
    });
  }

  /** The next request: in this tick's setImmediate, or once `minGapMs` have passed since the last one started (at once when a batch is full). */
  private schedule(): void {
    const full = this.queue.length >= this.maxBatch;
    if (this.timer && full) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.immediate || this.timer || this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    const wait = this.lastSend + this.minGapMs - performance.now();
    if (wait > 0 && !full) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
      return;
    }
    this.immediate = true;
    setImmediate(() => {
      this.immediate = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight++;
    this.lastSend = performance.now();
    this.send(batch.map((p) => p.doc))
      .then((results) => settle(batch, results))
      .catch((error) => batch.forEach((p) => p.reject(error)))
      .finally(() => {
        this.inFlight--;
        this.schedule();
      });
    this.schedule();
  }
}

const STATUS: Record<string, [MeshError['code'], number]> = {
  conflict: ['CONFLICT', 409],
  forbidden: ['FORBIDDEN', 403],
  unauthorized: ['UNAUTHORIZED', 401],
};

function settle(batch: Pending[], results: BulkResult[]): void {
  batch.forEach((pending, i) => {
    const result = results[i]?.id === pending.doc._id ? results[i] : results.find((r) => r.id === pending.doc._id);
    if (result?.rev && !result.error) return pending.resolve(result.rev);
    const [code, statusCode] = STATUS[result?.error ?? ''] ?? ['SERVER_ERROR', 500];
    pending.reject(
      new MeshError(code, `write ${pending.doc._id}: ${statusCode} ${result?.error ?? 'no result'} ${result?.reason ?? ''}`.trim(), {
        statusCode,
        reason: result?.reason,
      }),
    );
  });
}
