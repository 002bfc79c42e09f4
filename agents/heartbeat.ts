import { timeoutSignal } from '../core/abort.js';
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

/** How long the last heartbeat may take (a dead server must not hold a stopping agent long). */
const LAST_BEAT_MS = 2000;

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

  /** `signal`: the requests end with it instead of the database's own (the last heartbeat). */
  async beat(state: string, signal?: AbortSignal): Promise<void> {
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
        this.rev = await this.ctx.db.put({ ...doc, _rev: this.rev }, { signal });
        return;
      } catch (error) {
        if (isMeshError(error, 'CONFLICT')) {
          this.rev = (await this.ctx.db.get<AgentHeartbeat>(id, {}, { signal }).catch(() => undefined))?._rev;
          continue;
        }
        // The loop's beat cut short by stop() is noise; a last heartbeat that was not written is not.
        if (!this.stopped.signal.aborted || state !== 'running') this.ctx.logger.warn(`heartbeat (${state}): ${errorMessage(error)}`);
        return;
      }
    }
  }

  /**
   * Stops the loop and writes a last heartbeat with the final state. It has its own deadline:
   * by now the agent's requests may have been cut (SIGTERM gives them a few seconds), and a
   * server that still answers must learn that the agent stopped.
   */
  async stop(state = 'stopped'): Promise<void> {
    this.stopped.abort();
    await this.loop;
    await this.beat(state, timeoutSignal(LAST_BEAT_MS));
  }
}
