/**
 * The faults, each injected, held for a while, then healed. Every injector returns what it did
 * (one line for the log), or undefined when there was nothing to hit (no batch job, no lyon
 * agent running at that moment): such a fault is not counted.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Database } from '../../store/database.js';
import { replicationId } from '../../coordinator/replication.js';
import { sleep } from '../../core/sleep.js';
import { killPid, markedProcesses } from './marked.js';
import { type Rig, alive, killChild } from './rig.js';
import type { FaultKind, PlannedFault } from './schedule.js';

const run = promisify(execFile);

export interface FaultContext {
  rig: Rig;
  /** The environment variable every process of the topology carries (see marked.ts). */
  marker: { name: string; value: string };
  /** Step programs that can be switched (transfer only when proc0 is not the built-in SFTP transfer). */
  programs: readonly string[];
  /** Input file names of documents in flight, for per-file switches. */
  inputs: () => string[];
  signal: AbortSignal;
}

type Injector = (ctx: FaultContext, fault: PlannedFault) => Promise<string | undefined>;

/** Polls for a target for up to `ms` (a lyon run or a batch job exists only now and then). */
async function findWithin<T>(ms: number, signal: AbortSignal, find: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  while (!signal.aborted) {
    const found = await find();
    if (found !== undefined || Date.now() >= deadline) return found;
    await sleep(200, signal);
  }
  return undefined;
}

const hold = (ctx: FaultContext, fault: PlannedFault) => sleep(fault.holdMs, ctx.signal);

/**
 * How long a batch-job fault looks for a job: a job exists only while lyon has work, and with
 * short holds (the CI test's 2–4 s) the hold alone would often end before one is submitted.
 */
const BATCH_JOB_SEARCH_MS = 10_000;

const injectors: Record<FaultKind, Injector> = {
  /** kill -9 of the modane agent (restarted after the hold) or of a running lyon `--once` agent. */
  async 'kill-agent'(ctx, fault) {
    const { rig } = ctx;
    if (fault.pick < 0.5) {
      const lyon = await findWithin(fault.holdMs, ctx.signal, async () =>
        (await markedProcesses(ctx.marker.name, ctx.marker.value)).find((p) => / agent --site lyon /.test(` ${p.cmdline} `)),
      );
      if (lyon && killPid(lyon.pid, 'SIGKILL')) return `kill -9 lyon agent pid ${lyon.pid}`;
    }
    if (!alive(rig.agent)) return undefined;
    const pid = rig.agent.pid;
    await killChild(rig.agent, 'SIGKILL');
    await hold(ctx, fault);
    rig.startAgent();
    return `kill -9 modane agent pid ${pid}, restarted after ${fault.holdMs} ms`;
  },

  /** A lyon batch job: `scancel` it, or kill -9 its `mesh run-batch` process. */
  async 'kill-batch-job'(ctx, fault) {
    const slurm = ctx.rig.topology.slurm;
    if (!slurm) return undefined;
    if (fault.pick < 0.5) {
      const id = await findWithin(Math.max(fault.holdMs, BATCH_JOB_SEARCH_MS), ctx.signal, async () => {
        const ids = (await slurm.squeue().catch(() => ''))
          .split('\n')
          .map((l) => l.trim().split(/\s+/)[0])
          .filter((id) => /^\d+$/.test(id));
        return ids.length > 0 ? ids[Math.floor(fault.pick2 * ids.length)] : undefined;
      });
      if (!id) return undefined;
      await run('/usr/bin/scancel', [id], { env: { ...process.env, ...slurm.env } });
      return `scancel job ${id}`;
    }
    const job = await findWithin(Math.max(fault.holdMs, BATCH_JOB_SEARCH_MS), ctx.signal, async () =>
      (await markedProcesses(ctx.marker.name, ctx.marker.value)).find((p) => / run-batch /.test(` ${p.cmdline} `)),
    );
    if (!job || !killPid(job.pid, 'SIGKILL')) return undefined;
    return `kill -9 batch job process pid ${job.pid}`;
  },

  /** kill -9 of the coordinator, restarted after the hold. */
  async 'kill-coordinator'(ctx, fault) {
    const { rig } = ctx;
    if (!alive(rig.coordinator)) return undefined;
    const pid = rig.coordinator.pid;
    await killChild(rig.coordinator, 'SIGKILL');
    await hold(ctx, fault);
    rig.startCoordinator();
    return `kill -9 coordinator pid ${pid}, restarted after ${fault.holdMs} ms`;
  },

  /** Stops modane's or kit's server (SIGKILL or SIGTERM), starts it again on the same data and port. */
  async 'restart-server'(ctx, fault) {
    const { rig } = ctx;
    const site = fault.pick < 0.5 ? 'modane' : 'kit';
    const signal = fault.pick2 < 0.5 ? 'SIGKILL' : 'SIGTERM';
    const server = rig.topology.servers[site];
    rig.serversDown.add(site);
    await killChild(server.child, signal);
    await hold(ctx, fault);
    await rig.topology.startServer(site);
    rig.serversDown.delete(site);
    return `${signal} ${site} server, restarted after ${fault.holdMs} ms`;
  },

  /**
   * A partition between the two servers: the coordinator is paused (SIGSTOP, as if it hung) and
   * both replication jobs are deleted from modane's `_replicator` (so nothing replicates); after
   * the hold the coordinator resumes and must notice and recreate them.
   */
  async 'stop-replication'(ctx, fault) {
    const { rig } = ctx;
    const { config } = rig.topology;
    if (!alive(rig.coordinator)) return undefined;
    rig.coordinator.kill('SIGSTOP');
    rig.coordinatorPaused = true;
    const replicator = new Database({ url: config.sites.modane.server, database: '_replicator' });
    const deleted: string[] = [];
    for (const [from, to] of [
      ['modane', 'kit'],
      ['kit', 'modane'],
    ]) {
      const id = replicationId(config.database, from, to);
      for (let attempt = 0; attempt < 5; attempt++) {
        const doc = await replicator.get<{ _rev: string }>(id).catch(() => undefined);
        if (!doc) break;
        const [row] = await replicator.bulk([{ _id: id, _rev: doc._rev, _deleted: true }]).catch(() => [{ error: 'unreachable' }] as Array<{ error?: string }>);
        if (!row?.error) {
          deleted.push(`${from}→${to}`);
          break;
        }
      }
    }
    await hold(ctx, fault);
    rig.coordinator.kill('SIGCONT');
    rig.coordinatorPaused = false;
    return `coordinator paused, replication jobs deleted (${deleted.join(', ') || 'none found'}) for ${fault.holdMs} ms, coordinator resumed`;
  },

  async 'restart-nats'(ctx, fault) {
    const { rig } = ctx;
    const nats = rig.topology.nats;
    if (!nats) return undefined;
    rig.natsDown = true;
    await nats.kill();
    await hold(ctx, fault);
    await nats.restart();
    rig.natsDown = false;
    return `kill -9 nats-server, restarted after ${fault.holdMs} ms`;
  },

  'step-fail': (ctx, fault) => stepSwitch(ctx, fault, 'fail'),
  'step-hang': (ctx, fault) => stepSwitch(ctx, fault, 'hang'),
};

/** A fault switch (examples/steps/fault-switch.mjs) for a whole program or for one input file, removed after the hold. */
async function stepSwitch(ctx: FaultContext, fault: PlannedFault, kind: 'fail' | 'hang'): Promise<string> {
  const inputs = ctx.inputs();
  // A program's switch breaks every run of it; an input's breaks one document's step (proc1 reads `<name>`, proc2 `<name>.txt`).
  const input = () => `${inputs[Math.floor(fault.pick2 * inputs.length)]}${fault.pick < 0.75 ? '' : '.txt'}`;
  const name = fault.pick < 0.5 || inputs.length === 0 ? ctx.programs[Math.floor(fault.pick2 * ctx.programs.length)] : input();
  const switchName = `${name}.${kind}`;
  await ctx.rig.setSwitch(switchName);
  // Some per-document failures stay until the mesh settled: that step fails for good, and the
  // harness then checks that `mesh retry` completes it.
  if (kind === 'fail' && !ctx.programs.includes(name) && fault.pick2 < 0.5) {
    ctx.rig.permanent.add(switchName);
    return `${switchName} on until the round settled (fails for good)`;
  }
  await hold(ctx, fault);
  await ctx.rig.clearSwitch(switchName);
  return `${switchName} on for ${fault.holdMs} ms`;
}

export function injectFault(ctx: FaultContext, fault: PlannedFault): Promise<string | undefined> {
  return injectors[fault.kind](ctx, fault);
}
