/**
 * What an agent knows of the operators' controls (core/operator-controls.ts): the last
 * `mesh:controls` it read, refreshed at each sweep and on each change of that document in the
 * agent's changes feed (agents/discovery.ts). Deciding a claim costs no request. When the document cannot be read the last known
 * state stays in force (a pause must not lapse because a server hiccuped), and that is logged.
 */
import type { StepConfig } from '../config/types.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type OperatorControls, asControls, claimableSteps, noControls } from '../core/operator-controls.js';
import { readControls } from '../store/controls.js';
import type { Database } from '../store/database.js';

export class ControlsView {
  private known: OperatorControls = noControls();
  private unreadable = false;

  constructor(
    private readonly db: Database,
    private readonly site: string,
    private readonly logger: Logger,
  ) {}

  get current(): OperatorControls {
    return this.known;
  }

  /** The steps of `steps` this site may claim now (none when it is drained). */
  claimable<S extends StepConfig>(steps: readonly S[]): S[] {
    return claimableSteps(steps, this.site, this.known);
  }

  /** Reads the document again; resolves true when what this site may claim changed. Never throws. */
  async refresh(signal?: AbortSignal): Promise<boolean> {
    try {
      const stored = await readControls(this.db, signal ? { signal } : {});
      if (this.unreadable) this.logger.info('operator controls readable again');
      this.unreadable = false;
      return this.learn(stored ?? noControls());
    } catch (error) {
      if (!this.unreadable) this.logger.warn(`operator controls unreadable, keeping the last known (${this.describe()}): ${errorMessage(error)}`);
      this.unreadable = true;
      return false;
    }
  }

  /** A copy of the document from the changes feed; true when what may be claimed changed. */
  learnFrom(doc: unknown): boolean {
    const controls = asControls(doc);
    return controls !== undefined && this.learn(controls);
  }

  /** Paused steps and whether this site is drained, for the logs. */
  describe(controls: OperatorControls = this.known): string {
    const paused = Object.keys(controls.paused);
    const drained = Object.prototype.hasOwnProperty.call(controls.drained, this.site);
    return `${paused.length > 0 ? `paused ${paused.join(', ')}` : 'no step paused'}; site ${this.site} ${drained ? 'drained' : 'not drained'}`;
  }

  private learn(next: OperatorControls): boolean {
    const before = this.describe();
    this.known = next;
    const after = this.describe();
    if (before === after) return false;
    this.logger.warn({ controls: after }, `operator controls changed: ${after}`);
    return true;
  }
}
