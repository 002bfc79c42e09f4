/**
 * The documents an agent may claim next, from sweeps of the ready views, the changes feed and
 * NATS hints: the newest copy of each, none older than what this agent itself wrote, none
 * already running here, and none whose revision was already judged unusable.
 */
import type { DaqDocument } from '../core/document.js';

function revNumber(doc: DaqDocument): number {
  return Number.parseInt(doc._rev ?? '0', 10);
}

/** How many documents' last written revision is remembered (a bound on memory, not on correctness). */
const WRITTEN_MEMORY = 50_000;
/** Picks among this many of the first candidates: agents racing on the same view rows then rarely pick the same one. */
const PICK_AMONG = 64;

export class Candidates {
  private readonly queue = new Map<string, DaqDocument>();
  /** The newest revision this agent wrote per document: older copies from the feed or a sweep are stale. */
  private readonly written = new Map<string, number>();
  private readonly skippedRevs = new Map<string, string>();

  get size(): number {
    return this.queue.size;
  }

  has(id: string): boolean {
    return this.queue.has(id);
  }

  /** Adds what is newer than anything known; `busy` documents (running here) are left out. Returns how many were offered. */
  offer(docs: readonly DaqDocument[], busy: (id: string) => boolean): number {
    for (const doc of docs) {
      if (busy(doc._id) || this.skippedRevs.get(doc._id) === doc._rev || revNumber(doc) < (this.written.get(doc._id) ?? 0)) continue;
      const known = this.queue.get(doc._id);
      if (!known || revNumber(doc) >= revNumber(known)) this.queue.set(doc._id, doc);
    }
    return docs.length;
  }

  /** A random one of the first candidates, removed from the queue. */
  take(): DaqDocument | undefined {
    const keys = [...this.queue.keys()].slice(0, PICK_AMONG);
    if (keys.length === 0) return undefined;
    const id = keys[Math.floor(Math.random() * keys.length)];
    const doc = this.queue.get(id) as DaqDocument;
    this.queue.delete(id);
    return doc;
  }

  /** This agent wrote `doc`: copies older than it are stale. */
  remember(doc: DaqDocument): void {
    if (this.written.size > WRITTEN_MEMORY) this.written.clear();
    this.written.set(doc._id, revNumber(doc));
  }

  /** Marks this revision unusable; true the first time (the caller logs it once). */
  skip(doc: DaqDocument): boolean {
    if (this.skippedRevs.get(doc._id) === doc._rev) return false;
    this.skippedRevs.set(doc._id, doc._rev ?? '');
    return true;
  }
}
