#!/usr/bin/env node
/**
 * `npm run test:faults`: the fault-injection harness from the command line.
 *   node dist/test/faults/main.js [--seed S] [--rounds N] [--files N] [--faults N] …
 * Prints the seed first, one line per fault and check, and a table at the end; exits 1 on
 * any invariant violation, 2 on bad arguments.
 */
import { Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../../core/log.js';
import { errorMessage } from '../../core/errors.js';
import { FAULT_KINDS, type FaultKind } from './schedule.js';
import { reportTable, runHarness } from './harness.js';

function integer(min: number) {
  return (text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`"${text}" is not an integer ≥ ${min}`);
    return n;
  };
}

function kinds(text: string): FaultKind[] {
  const list = text
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  const unknown = list.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0 || list.length === 0)
    throw new InvalidArgumentError(`unknown fault kind(s) ${unknown.join(', ') || '(none given)'}; known: ${FAULT_KINDS.join(', ')}`);
  return list as FaultKind[];
}

const program = new Command('test:faults')
  .description(
    'fault injection on the simulated two-site topology: kills, restarts, partitions and broken steps at seeded random moments, invariants checked after every round',
  )
  .option('--seed <n>', 'PRNG seed (default: random, printed first); the same seed replays the same schedule', integer(0))
  .option('--rounds <n>', 'rounds of faults, each followed by a settle and a check', integer(1), 10)
  .option('--files <n>', 'documents arriving per round', integer(1), 12)
  .option('--faults <n>', 'faults per round, one after the other', integer(0), 4)
  .option('--max-hold <s>', 'longest a fault lasts, in seconds', integer(2), 12)
  .option('--step-ms <ms>', 'how long every step program runs', integer(0), 1500)
  .option('--settle <s>', 'longest wait for the mesh to settle after a round, in seconds', integer(10), 240)
  .option('--kinds <list>', `only these faults, comma-separated (${FAULT_KINDS.join(', ')})`, kinds)
  .option('--no-ssh', 'no private sshd: proc0 copies locally and lyon runs start locally')
  .option('--no-slurm', 'no Slurm: lyon steps run directly')
  .option('--no-nats', 'no nats-server')
  .option('--keep', 'keep the work folder (logs, data) for a post-mortem')
  .showHelpAfterError('(--help lists every option)');

program.exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));
program.parse();
const o = program.opts<{
  seed?: number;
  rounds: number;
  files: number;
  faults: number;
  maxHold: number;
  stepMs: number;
  settle: number;
  kinds?: FaultKind[];
  ssh: boolean;
  slurm: boolean;
  nats: boolean;
  keep?: boolean;
}>();
const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
const stop = new AbortController();
const onSignal = () => stop.abort();
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
const say = (line: string) => process.stdout.write(`[faults ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
try {
  const report = await runHarness({
    seed,
    rounds: o.rounds,
    filesPerRound: o.files,
    faultsPerRound: o.faults,
    maxHoldMs: o.maxHold * 1000,
    settleMs: o.settle * 1000,
    stepSleepMs: o.stepMs,
    ssh: o.ssh,
    slurm: o.slurm,
    nats: o.nats,
    kinds: o.kinds,
    keep: o.keep,
    logger: createLogger({ level: process.env.MESH_LOG_LEVEL ?? 'warn' }),
    say,
    signal: stop.signal,
  });
  process.stdout.write(`${reportTable(report)}\n`);
  process.exitCode = report.violations.length > 0 || stop.signal.aborted ? 1 : 0;
} catch (error) {
  say(`harness failed: ${errorMessage(error)} (seed ${seed})`);
  process.exitCode = 1;
}
