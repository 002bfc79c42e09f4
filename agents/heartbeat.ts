import { errorMessage, isMeshError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import type { AgentContext } from './context.js';

export const AGENT_DOC_TYPE = 'mesh-agent';

export interface AgentHeartbeat {
  _id: string;
  _rev?: string;
  type: typeof AGENT_DOC_TYPE;
  site: string;
  agent: string;
  host: string;
  pid: number;
  started: string;
  last_seen: string;
  state: string;
  running: Array<{ doc: string; step: string }>;
  /** What this agent did since it started (absent for agents that run no steps themselves). */
  counters?: AgentActivity;
}

/** Since the agent started: claims won, claims lost to another agent, retried attempts claimed, steps that ended ok / failed. */
export interface AgentActivity {
  claims: number;
  claim_conflicts: number;
  retries: number;
  steps_ok: number;
  steps_failed: number;
}

export function heartbeatId(site: string, agent: string): string {
  return `mesh-agent:${site}:${agent}`;
}

/** Writes the agent's heartbeat document now and every `heartbeat_s`, so `mesh status` sees who is alive. */
export class Heartbeat {
  private rev: string | undefined;
  private readonly started: string;
  private loop: Promise<void> | undefined;
  private readonly stopped = new AbortController();

  constructor(
    private readonly ctx: AgentContext,
    private readonly running: () => Array<{ doc: string; step: string }>,
    private readonly activity?: () => AgentActivity,
  ) {
    this.started = ctx.now().toISOString();
  }

  start(): void {
    this.loop = (async () => {
      do await this.beat('running');
      while (await sleep(this.ctx.config.agent.heartbeat_s * 1000, this.stopped.signal));
    })();
  }

  async beat(state: string): Promise<void> {
    const id = heartbeatId(this.ctx.site.name, this.ctx.name);
    const doc: AgentHeartbeat = {
      _id: id,
      type: AGENT_DOC_TYPE,
      site: this.ctx.site.name,
      agent: this.ctx.name,
      host: this.ctx.host,
      pid: process.pid,
      started: this.started,
      last_seen: this.ctx.now().toISOString(),
      state,
      running: this.running(),
      ...(this.activity ? { counters: this.activity() } : {}),
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        this.rev = await this.ctx.db.put({ ...doc, _rev: this.rev });
        return;
      } catch (error) {
        if (isMeshError(error, 'CONFLICT')) {
          this.rev = (await this.ctx.db.get<AgentHeartbeat>(id).catch(() => undefined))?._rev;
          continue;
        }
        // The loop's beat cut short by stop() is noise; a last heartbeat that was not written is not.
        if (!this.stopped.signal.aborted || state !== 'running') this.ctx.logger.warn(`heartbeat (${state}): ${errorMessage(error)}`);
        return;
      }
    }
  }

  /** Stops the loop and writes a last heartbeat with the final state. */
  async stop(state = 'stopped'): Promise<void> {
    this.stopped.abort();
    await this.loop;
    await this.beat(state);
  }
}
