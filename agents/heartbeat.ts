import type { MeshConfig } from '../config/types.js';
import { timeoutSignal } from '../core/abort.js';
import { sleep } from '../core/sleep.js';
import { AGENT_DOC_TYPE, type AgentActivity, type AgentHeartbeat, type RunOutcome, heartbeatId, writeHeartbeat } from '../store/heartbeats.js';
import type { AgentContext } from './context.js';

export { AGENT_DOC_TYPE, type AgentActivity, type AgentHeartbeat, type RunOutcome, heartbeatId };

/** How long the last heartbeat may take (a dead server must not hold a stopping agent long). */
const LAST_BEAT_MS = 2000;

/**
 * Seconds between two heartbeats of an agent whose document would say nothing new (idle, or
 * running the same steps with the same counters): a third of `alerts.agent_silent_s`, never
 * less than `agent.heartbeat_s`. A live agent's `last_seen` is then never older than a third of
 * the silence threshold plus one `heartbeat_s` (a failed write is tried again at the next look),
 * which leaves two thirds of it for replication and clocks: it never looks silent. With the
 * defaults (10 s, 120 s): every 40 s, 1.5 writes an idle minute instead of 6.
 */
export function keepAliveSeconds(config: Pick<MeshConfig, 'agent' | 'alerts'>): number {
  return Math.max(config.agent.heartbeat_s, config.alerts.agent_silent_s / 3);
}

/**
 * The agent's heartbeat document, so that `mesh status`, the page and the alerts see who is
 * alive. Written at start and at stop; in between the agent looks every `heartbeat_s` and writes
 * only when the content changed (state, running steps, counters: coalesced to at most one write
 * per `heartbeat_s`) or when the last write is `keepAliveSeconds` old. Every heartbeat write is a
 * validated write on the server: an idle agent must not rewrite an unchanged document every few
 * seconds.
 *
 * With `ctx.heartbeatAs` (a `--once` run) the document is that shared identity's, and says which
 * run it shows (`last_run`: this process's agent name, start, and at stop its end and outcome).
 */
export class Heartbeat {
  private rev: string | undefined;
  private readonly started: string;
  private loop: Promise<void> | undefined;
  private readonly stopped = new AbortController();
  /** What the last written document said, `last_seen` left out, and when it was written (ms). */
  private lastContent: string | undefined;
  private lastWritten = Number.NEGATIVE_INFINITY;
  /** Heartbeat writes this process made (a test compares them with the document's revisions). */
  writes = 0;

  constructor(
    private readonly ctx: AgentContext,
    private readonly running: () => Array<{ doc: string; step: string }>,
    private readonly activity?: () => AgentActivity,
  ) {
    this.started = ctx.now().toISOString();
  }

  start(): void {
    const lookMs = this.ctx.config.agent.heartbeat_s * 1000;
    const keepAliveMs = keepAliveSeconds(this.ctx.config) * 1000;
    this.loop = (async () => {
      do {
        const due = this.lastContent !== this.content('running') || Date.now() - this.lastWritten >= keepAliveMs;
        if (due) await this.beat('running');
      } while (await sleep(lookMs, this.stopped.signal));
    })();
  }

  private content(state: string): string {
    return JSON.stringify([state, this.running(), this.activity?.() ?? null]);
  }

  /** Writes the heartbeat now. `signal`: the requests end with it instead of the database's own (the last heartbeat). */
  async beat(state: string, signal?: AbortSignal, outcome?: RunOutcome): Promise<void> {
    const content = this.content(state);
    const as = this.ctx.heartbeatAs;
    const now = this.ctx.now().toISOString();
    const doc: AgentHeartbeat = {
      _id: heartbeatId(this.ctx.site.name, as ?? this.ctx.name),
      type: AGENT_DOC_TYPE,
      site: this.ctx.site.name,
      agent: as ?? this.ctx.name,
      host: this.ctx.host,
      pid: process.pid,
      started: this.started,
      last_seen: now,
      state,
      running: this.running(),
      ...(this.activity ? { counters: this.activity() } : {}),
      ...(as ? { last_run: { agent: this.ctx.name, started: this.started, ...(outcome ? { finished: now, outcome } : {}) } } : {}),
    };
    const write = await writeHeartbeat(this.ctx.db, doc, this.rev, signal);
    this.rev = write.rev;
    if (write.written || write.superseded) {
      if (write.written) this.writes++;
      else this.ctx.logger.debug(`heartbeat (${state}): a --once run started later shows on ${doc._id}`);
      this.lastContent = content;
      this.lastWritten = Date.now();
      return;
    }
    // The loop's beat cut short by stop() is noise; a last heartbeat that was not written is not.
    if (!this.stopped.signal.aborted || state !== 'running') this.ctx.logger.warn(`heartbeat (${state}): ${write.reason}`);
  }

  /**
   * Stops the loop and writes a last heartbeat with the final state. It has its own deadline:
   * by now the agent's requests may have been cut (SIGTERM gives them a few seconds), and a
   * server that still answers must learn that the agent stopped. `outcome`: how the agent's
   * work ended, recorded in `last_run` of a `--once` identity.
   */
  async stop(state = 'stopped', outcome: RunOutcome = 'ok'): Promise<void> {
    this.stopped.abort();
    await this.loop;
    await this.beat(state, timeoutSignal(LAST_BEAT_MS), outcome);
  }
}
