/**
 * The remote trigger: a site that may not keep a process alive (lyon) is woken by a site
 * that may (modane), which runs `mesh agent --site lyon --once` there over SSH when
 * documents become ready for a step lyon owns (the original scripts' remote hook).
 *
 * A poke that finds the trigger idle (no run in flight, none due) starts a run at once: the
 * hand-over to lyon is on the path of every document. Pokes are coalesced only while a run is in
 * flight or waiting for its turn: one run at a time, run starts at least `intervalMs` apart,
 * and any number of pokes during a run (or a wait) make exactly one more run afterwards. The
 * remote output is streamed, line by line, into the local log.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { MeshConfig, SiteConfig, SshTarget } from '../config/types.js';
import type { DaqDocument } from '../core/document.js';
import { errorMessage, isMeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { readyFor } from '../core/state.js';
import type { Database } from '../store/database.js';
import * as files from '../store/files.js';
import { execRemote } from './executors/remote-exec.js';
import { runWorkReady } from './run-readiness.js';
import { connectSsh } from './executors/ssh-connect.js';
import { type RunOutcome, type RunRecorder, RunWords, shorten } from './trigger-record.js';

export interface TriggerTarget {
  site: SiteConfig;
  /** Absent: the site shares this machine and its agent is started here (one-machine topologies). */
  ssh?: SshTarget;
  /** The steps that site owns: a document ready for one of them is a reason to poke. */
  steps: readonly string[];
}

/**
 * The sites that `site` must wake over SSH: every other site that owns a step, may not keep
 * a process alive and has ssh settings. Empty unless `site` itself may run for ever.
 */
export function needsTrigger(config: MeshConfig, site: string, options: { local?: boolean } = {}): TriggerTarget[] {
  if (!config.sites[site]?.long_running) return [];
  const targets: TriggerTarget[] = [];
  for (const remote of Object.values(config.sites)) {
    if (remote.name === site || remote.long_running || (!remote.ssh && !options.local)) continue;
    const steps = config.steps.filter((s) => s.site === remote.name).map((s) => s.name);
    if (steps.length > 0) targets.push({ site: remote, ...(remote.ssh ? { ssh: remote.ssh } : {}), steps });
  }
  return targets;
}

/**
 * The same `mesh agent --site S --once`, started on this machine: through the site's own `mesh`
 * argument vector when the config gives one (it may carry the site's environment, e.g. the
 * account its agents write as, which is not this agent's), else this machine's mesh with this config.
 */
export function localAgentArgv(site: SiteConfig, configFile: string): string[] {
  if (!(site.mesh.length === 1 && site.mesh[0] === 'mesh')) return remoteAgentArgv(site);
  // A path, not an import: agents/ must not depend on cli/.
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  return [process.execPath, main, '--config', configFile, 'agent', '--site', site.name, '--once'];
}

/** The argument vector run on the remote site; every word is single-quoted on the way. */
export function remoteAgentArgv(site: SiteConfig): string[] {
  return [...site.mesh, 'agent', '--site', site.name, '--once'];
}

export interface RemoteTriggerOptions {
  target: TriggerTarget;
  /** The config file a local run is started with (targets without ssh). */
  configFile?: string;
  /** The local logger; the trigger logs through a child `{ trigger: site }`. */
  logger: Logger;
  /** Minimum time between the starts of two runs (default 30 s). */
  intervalMs?: number;
  /**
   * Runs the agent once instead of over SSH or as a local child (in-process tests): resolves
   * with its exit status (null: it did not exit normally) and ends early when `signal` aborts.
   */
  runner?: (signal: AbortSignal) => Promise<number | null>;
  /** A remote run is stopped (SIGTERM, then the channel closed) after this long (default 15 min). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** What `stop()` gives a running remote agent to drain after SIGTERM (default 10 s). */
  graceMs?: number;
  /** Told how each run ended (the trigger records of store/triggers.ts); a run stopped by `stop()` is not told. */
  recorder?: RunRecorder;
}

export type TriggerState = 'idle' | 'waiting' | 'running' | 'stopped';

const PINO_LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

export class RemoteTrigger {
  state: TriggerState = 'idle';
  readonly counters = { runs: 0, failures: 0, pokes: 0 };
  /** Exit status of the last run (null: it did not exit normally, undefined: no run yet). */
  lastExit: number | null | undefined;
  private pending = false;
  private lastStart = Number.NEGATIVE_INFINITY;
  private loop: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  private readonly stopping = new AbortController();
  private readonly log: Logger;
  private readonly argv: string[];

  constructor(private readonly options: RemoteTriggerOptions) {
    this.log = options.logger.child({ trigger: options.target.site.name });
    this.argv = remoteAgentArgv(options.target.site);
  }

  /** Work arrived for the remote site: make sure a run starts (soon) after this moment. */
  poke(): void {
    if (this.stopping.signal.aborted) return;
    this.counters.pokes++;
    this.pending = true;
    this.loop ??= this.drain().finally(() => {
      this.loop = undefined;
      // A poke between the loop's last check and this point must not be lost.
      if (this.pending && !this.stopping.signal.aborted) this.poke();
    });
  }

  /** Resolves once no run is running or due. */
  async whenIdle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Stops waiting, asks a running remote agent to drain (SIGTERM), closes the session. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping.abort();
      await this.whenIdle();
      this.state = 'stopped';
    })();
    return this.stopped;
  }

  private async drain(): Promise<void> {
    const signal = this.stopping.signal;
    while (this.pending && !signal.aborted) {
      // A timer may fire a millisecond before Date.now() says the interval is over: look again.
      let wait: number;
      while (!signal.aborted && (wait = this.lastStart + (this.options.intervalMs ?? 30_000) - Date.now()) > 0) {
        this.state = 'waiting';
        await sleep(wait, signal);
      }
      if (signal.aborted) break;
      this.pending = false;
      this.state = 'running';
      this.lastStart = Date.now();
      this.counters.runs++;
      this.log.debug({ run: this.counters.runs }, 'remote run due');
      await (this.options.runner ? this.runWith(this.options.runner) : this.runOnce());
    }
    this.state = signal.aborted ? 'stopped' : 'idle';
  }

  private async runOnce(): Promise<void> {
    const started = new Date();
    const words = new RunWords();
    const outcome = this.options.target.ssh ? await this.runRemotely(words) : await this.runLocally(words);
    if (outcome === 'stopped') return;
    this.options.recorder?.record(this.options.target.site.name, {
      started: started.toISOString(),
      ended: new Date().toISOString(),
      ...outcome,
      ...(outcome.ok ? {} : { reason: words.reason() ?? outcome.reason ?? outcome.how }),
    });
  }

  private async runRemotely(words: RunWords): Promise<Omit<RunOutcome, 'started' | 'ended'> | 'stopped'> {
    const { target } = this.options;
    const ssh = target.ssh as SshTarget;
    const started = Date.now();
    let client: Awaited<ReturnType<typeof connectSsh>> | undefined;
    try {
      client = await connectSsh(ssh, { signal: this.stopping.signal, site: target.site.name, timeoutMs: this.options.connectTimeoutMs });
      this.log.info({ argv: this.argv }, 'starting the remote agent');
      const outcome = await execRemote(client, this.argv, {
        signal: this.stopping.signal,
        timeoutMs: this.options.timeoutMs ?? 15 * 60_000,
        killGraceMs: this.options.graceMs ?? 10_000,
        onLine: (stream, line) => this.relay(stream, line, words),
      });
      this.lastExit = outcome.exit_code;
      const seconds = (Date.now() - started) / 1000;
      if (outcome.exit_code === 0) {
        this.log.info({ seconds }, 'remote agent run finished');
        return { ok: true, how: 'exit 0' };
      }
      this.counters.failures++;
      const how = outcome.timed_out
        ? 'timed out'
        : outcome.aborted
          ? 'stopped'
          : outcome.exit_code !== null
            ? `exit ${outcome.exit_code}`
            : `signal ${outcome.signal}`;
      this.log.warn({ seconds, exit_code: outcome.exit_code, signal: outcome.signal }, `remote agent run ended badly (${how})`);
      return outcome.aborted ? 'stopped' : { ok: false, how };
    } catch (error) {
      this.lastExit = null;
      if (isMeshError(error, 'ABORTED')) return 'stopped';
      this.counters.failures++;
      this.log.warn({ code: isMeshError(error) ? error.code : undefined }, `cannot run the remote agent: ${errorMessage(error)}`);
      return { ok: false, how: 'not started', reason: shorten(`cannot run the agent of ${target.site.name} over SSH: ${errorMessage(error)}`) };
    } finally {
      client?.end();
    }
  }

  private async runWith(runner: (signal: AbortSignal) => Promise<number | null>): Promise<void> {
    try {
      this.lastExit = await runner(this.stopping.signal);
    } catch (error) {
      this.lastExit = null;
      this.log.warn(`the agent run failed: ${errorMessage(error)}`);
    }
    if (this.lastExit !== 0) this.counters.failures++;
  }

  /** One-machine topologies: the same run as a local child process (argument vector, no shell). */
  private async runLocally(words: RunWords): Promise<Omit<RunOutcome, 'started' | 'ended'> | 'stopped'> {
    const argv = localAgentArgv(this.options.target.site, this.options.configFile ?? '');
    const started = Date.now();
    this.log.info({ site: this.options.target.site.name }, 'starting the agent of a site on this machine');
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const onAbort = () => child.kill('SIGTERM');
    this.stopping.signal.addEventListener('abort', onAbort, { once: true });
    createInterface({ input: child.stdout }).on('line', (line) => this.relay('stdout', line, words));
    createInterface({ input: child.stderr }).on('line', (line) => this.relay('stderr', line, words));
    let code: number | null;
    let signal: string | null;
    try {
      // Rejects when the program cannot be started (an 'error' event).
      [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    } catch (error) {
      this.counters.failures++;
      this.lastExit = null;
      this.log.warn(`cannot start the agent of ${this.options.target.site.name}: ${errorMessage(error)}`);
      return { ok: false, how: 'not started', reason: shorten(`cannot start ${argv[0]}: ${errorMessage(error)}`) };
    } finally {
      this.stopping.signal.removeEventListener('abort', onAbort);
    }
    this.lastExit = code;
    if (code === 0) {
      this.log.info({ seconds: (Date.now() - started) / 1000 }, 'agent run finished');
      return { ok: true, how: 'exit 0' };
    }
    this.counters.failures++;
    this.log.warn({ exit_code: code }, 'agent run ended badly');
    if (this.stopping.signal.aborted) return 'stopped';
    return code !== null ? { ok: false, how: `exit ${code}` } : { ok: false, how: signal ? `signal ${signal}` : 'not started' };
  }

  /** A remote pino line is re-logged at its level with its message; anything else as text. Either may say why the run failed. */
  private relay(stream: 'stdout' | 'stderr', line: string, words: RunWords): void {
    if (!line.trim()) return;
    if (line.startsWith('{')) {
      try {
        const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const method = PINO_LEVELS[Number(level)];
        if (method && typeof msg === 'string') {
          words.logged(Number(level), msg, rest.err);
          return this.log[method]({ stream, remote: rest }, msg);
        }
      } catch {
        // not JSON: plain text below
      }
    }
    words.text(line);
    this.log.info({ stream }, line);
  }
}

/** The triggers a site runs, and which one a document ready for a step pokes. */
/** How often a remote site holding claims in flight is woken to check on them (lost jobs, lapsed leases). */
export const REMOTE_CLAIMS_CHECK_MS = 30_000;

export class RemoteTriggers {
  readonly triggers: ReadonlyMap<string, RemoteTrigger>;
  /** When each remote site was last woken only to check on its claims in flight. */
  private readonly claimChecks = new Map<string, number>();

  private readonly recorder: RunRecorder | undefined;

  constructor(
    private readonly config: MeshConfig,
    site: string,
    logger: Logger,
    options: Omit<RemoteTriggerOptions, 'target' | 'logger'> & { local?: boolean } = {},
  ) {
    const { local, ...rest } = options;
    this.recorder = options.recorder;
    this.triggers = new Map(
      needsTrigger(config, site, { local }).map((target) => [target.site.name, new RemoteTrigger({ configFile: config.source, ...rest, target, logger })]),
    );
  }

  /** Pokes the trigger of every remote site one of these documents is now ready for. */
  offer(docs: readonly DaqDocument[], now: Date): void {
    for (const doc of docs) {
      const step = readyFor(doc, this.config, now);
      const owner = this.config.steps.find((s) => s.name === step)?.site;
      if (owner) this.triggers.get(owner)?.poke();
    }
  }

  /**
   * Work waiting for a site that cannot watch the database itself: wake it (debounced by the
   * trigger). Also, at most every REMOTE_CLAIMS_CHECK_MS, while that site holds claims in flight:
   * its `--once` pass is what finds a cancelled or crashed batch job or a lapsed lease, and a site
   * woken only for ready work would never look at them again once nothing new arrives.
   */
  async wakeForWork(db: Database, now: Date, logger: Logger): Promise<void> {
    for (const [site, trigger] of this.triggers) {
      const steps = this.config.steps.filter((s) => s.site === site).map((s) => s.name);
      if ((await anyOf(steps, (step) => files.anyReady(db, step, now.toISOString()))) || (await runWorkReady(db, this.config, site, now))) {
        trigger.poke();
        continue;
      }
      if (Date.now() - (this.claimChecks.get(site) ?? 0) < REMOTE_CLAIMS_CHECK_MS) continue;
      if (await anyOf(steps, (step) => files.anyClaimed(db, step))) {
        this.claimChecks.set(site, Date.now());
        logger.debug({ site }, 'waking a site to check on its claims in flight');
        trigger.poke();
      }
    }
  }

  /** Stops every trigger, then waits for the records of their last runs to be written. */
  async stop(): Promise<void> {
    await Promise.all([...this.triggers.values()].map((t) => t.stop()));
    await this.recorder?.idle();
  }
}

async function anyOf(steps: readonly string[], test: (step: string) => Promise<boolean>): Promise<boolean> {
  for (const step of steps) if (await test(step)) return true;
  return false;
}
