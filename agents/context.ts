import type { MeshConfig, SiteConfig, StepConfig } from '../config/types.js';
import type { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import type { Logger } from '../core/log.js';
import type { MeshChannel } from '../core/nats.js';
import type { RemoteTriggers } from './trigger.js';

/** What every part of an agent needs, built once at start-up and passed down. */
export interface AgentContext {
  readonly config: MeshConfig;
  readonly site: SiteConfig;
  /** This agent's name, unique within the mesh (e.g. `modane-1`). */
  readonly name: string;
  readonly host: string;
  /**
   * The agent the heartbeat document speaks for, when not `name`: a site's `--once` runs on one
   * host share one (store/heartbeats.ts onceIdentity), while each run claims under its own `name`
   * (a claim is owned by name: two overlapping runs must not own each other's).
   */
  readonly heartbeatAs?: string;
  readonly db: Database;
  readonly logger: Logger;
  /** The steps this agent's site owns, in pipeline order. */
  readonly steps: readonly StepConfig[];
  readonly now: () => Date;
  /** Optional NATS channel (hints, cross-site claim registry); absent or down, CouchDB alone decides. */
  readonly channel?: MeshChannel;
  /** Wakes the agents of sites that may not keep a process alive (lyon) when work is ready for them. */
  readonly triggers?: RemoteTriggers;
  /**
   * Runs a claimed step to its recorded end (default: agents/step-job.ts, the step's program in
   * a supervised child process). In-process tests give a step they control.
   */
  readonly runStep?: ClaimedStepRunner;
}

/**
 * `processEnded`, when given, is called once the step's work is over and only its outcome is
 * left to write: the agent's slot is free for the next claim, which then shares a request with
 * that write instead of waiting for it.
 */
export type ClaimedStepRunner = (
  ctx: AgentContext,
  claimed: DaqDocument,
  step: string,
  stop: AbortSignal,
  processEnded?: () => void,
) => Promise<{ end: 'succeeded' | 'failed' | 'released' | 'lease-lost'; doc: DaqDocument }>;

/** `site/agent`, the `by` of history entries written by this agent. */
export function actor(ctx: AgentContext): string {
  return `${ctx.site.name}/${ctx.name}`;
}
