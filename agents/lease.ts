import type { DaqDocument, RunIdentity } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import type { AgentContext } from './context.js';
import { apply } from './writes.js';

/**
 * Keeps a claim alive: renews `lease_until` every third of the lease. When a renewal is
 * refused (someone took the claim over), `signal` aborts so the step's process is stopped.
 */
export class LeaseKeeper {
  private readonly lost = new AbortController();
  private readonly stopped = new AbortController();
  private loop: Promise<void>;
  /** Renewals one after the other: each is written on the revision the previous one made. */
  private writes: Promise<void> = Promise.resolve();
  private current: DaqDocument;

  constructor(private readonly ctx: AgentContext, doc: DaqDocument, private readonly step: string, private readonly leaseS: number) {
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

  /**
   * Renews the lease now and records the identity of the run just started for this claim,
   * so that an agent taking the claim over on this host can prove the run is gone.
   */
  recordRun(run: RunIdentity): Promise<void> {
    return this.renew(run);
  }

  private renew(run?: RunIdentity): Promise<void> {
    this.writes = this.writes.then(async () => {
      // Once stopped, the run is over: its identity protects nothing any more.
      if (this.lost.signal.aborted || this.stopped.signal.aborted) return;
      const leaseUntil = new Date(this.ctx.now().getTime() + this.leaseS * 1000).toISOString();
      try {
        this.current = await apply(this.ctx, this.current, { type: 'renew', step: this.step, agent: this.ctx.name, lease_until: leaseUntil, ...(run ? { run } : {}) });
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
