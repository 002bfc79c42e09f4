import type { DaqDocument, RunIdentity } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import type { AgentContext } from './context.js';
import { apply } from './writes.js';

/**
 * Keeps a claim alive: renews `lease_until` every third of the lease, so a step that ends
 * within a third of its lease costs no renewal at all. When a renewal is refused (someone took
 * the claim over), `signal` aborts so the step's process is stopped.
 *
 * The identity of the run started for the claim goes into the document with the first renewal
 * (`carryRun`), not in a write of its own: until then the host-local record written at the
 * spawn (run-identity.ts, `writeLocalRun`) is what an agent taking over on this host reads.
 */
export class LeaseKeeper {
  private readonly lost = new AbortController();
  private readonly stopped = new AbortController();
  private loop: Promise<void>;
  /** Renewals one after the other: each is written on the revision the previous one made. */
  private writes: Promise<void> = Promise.resolve();
  private current: DaqDocument;
  /** The run's identity, for the next renewal; undefined once the document has it. */
  private pendingRun: RunIdentity | undefined;

  constructor(
    private readonly ctx: AgentContext,
    doc: DaqDocument,
    private readonly step: string,
    private readonly leaseS: number,
  ) {
    this.current = doc;
    this.loop = this.run();
  }

  get signal(): AbortSignal {
    return this.lost.signal;
  }

  /** The latest revision of the document this keeper wrote. */
  get doc(): DaqDocument {
    return this.current;
  }

  private async run(): Promise<void> {
    const every = Math.max(200, (this.leaseS * 1000) / 3);
    while ((await sleep(every, this.stopped.signal)) && !this.lost.signal.aborted) await this.renew();
  }

  /** The identity of the run just started: the next renewal records it in the document. No write now. */
  carryRun(run: RunIdentity): void {
    this.pendingRun = run;
  }

  /**
   * Renews the lease now, recording the run's identity in the document: for when the
   * host-local record could not be written, so that the document is the only record left.
   */
  recordRun(run: RunIdentity): Promise<void> {
    this.pendingRun = run;
    return this.renew();
  }

  private renew(): Promise<void> {
    this.writes = this.writes.then(async () => {
      // Once stopped, the run is over: its identity protects nothing any more.
      if (this.lost.signal.aborted || this.stopped.signal.aborted) return;
      const leaseUntil = new Date(this.ctx.now().getTime() + this.leaseS * 1000).toISOString();
      const run = this.pendingRun;
      try {
        this.current = await apply(this.ctx, this.current, {
          type: 'renew',
          step: this.step,
          agent: this.ctx.name,
          lease_until: leaseUntil,
          ...(run ? { run } : {}),
        });
        if (this.pendingRun === run) this.pendingRun = undefined;
      } catch (error) {
        if (this.stopped.signal.aborted) return;
        this.ctx.logger.warn({ doc: this.current._id, step: this.step }, `lease lost: ${errorMessage(error)}`);
        this.lost.abort(error);
      }
    });
    return this.writes;
  }

  /** Stops renewing and waits for a renewal in flight, so the caller's next write has the latest _rev. */
  async stop(): Promise<DaqDocument> {
    this.stopped.abort();
    await this.loop;
    await this.writes;
    return this.current;
  }
}
