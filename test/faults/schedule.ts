/**
 * What a round does and when, drawn from one seeded PRNG so that a failing run can be replayed
 * with `--seed`: which fault, on which target, how long it lasts, and when documents arrive.
 * Only the schedule is replayed; the system's own timing (process start-up, replication) is not.
 */
import { prng } from '../support/generated-docs.js';

export const FAULT_KINDS = [
  'kill-agent',
  'kill-batch-job',
  'kill-coordinator',
  'restart-server',
  'stop-replication',
  'restart-nats',
  'step-fail',
  'step-hang',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface PlannedFault {
  kind: FaultKind;
  /** Wait before injecting it (after the previous fault healed). */
  gapMs: number;
  /** How long the fault lasts before it is healed (restart, switch removed, …). */
  holdMs: number;
  /** A choice among the fault's variants, in [0, 1): which server, signal, program, … */
  pick: number;
  pick2: number;
}

export interface PlannedArrival {
  atMs: number;
  files: number;
}

export interface RoundPlan {
  faults: PlannedFault[];
  arrivals: PlannedArrival[];
}

export interface Random {
  next(): number;
  int(min: number, max: number): number;
  choose<T>(items: readonly T[]): T;
}

export function random(seed: number): Random {
  const next = prng(seed);
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    choose: (items) => items[Math.floor(next() * items.length)],
  };
}

/**
 * Fault kinds drawn like cards from a shuffled deck, reshuffled when empty: every kind comes up
 * once before any comes up twice, so even a short run injects each of them.
 */
export class FaultDeck {
  private cards: FaultKind[] = [];
  constructor(
    private readonly rng: Random,
    private readonly kinds: readonly FaultKind[],
  ) {}

  draw(): FaultKind {
    if (this.cards.length === 0) {
      this.cards = [...this.kinds];
      for (let i = this.cards.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng.next() * (i + 1));
        [this.cards[i], this.cards[j]] = [this.cards[j], this.cards[i]];
      }
    }
    return this.cards.pop() as FaultKind;
  }
}

/** One round: `faults` faults one after the other, `files` documents in batches spread over `activeMs`. */
export function planRound(rng: Random, deck: FaultDeck, options: { faults: number; files: number; activeMs: number; maxHoldMs: number }): RoundPlan {
  const faults: PlannedFault[] = [];
  for (let i = 0; i < options.faults; i++) {
    faults.push({ kind: deck.draw(), gapMs: rng.int(500, 4000), holdMs: rng.int(2000, options.maxHoldMs), pick: rng.next(), pick2: rng.next() });
  }
  // Documents keep arriving while the faults happen: one batch per fault and one at the start.
  const batches = Math.min(options.files, options.faults + 1);
  const arrivals: PlannedArrival[] = [];
  let left = options.files;
  for (let b = 0; b < batches; b++) {
    const files = b === batches - 1 ? left : Math.floor(options.files / batches);
    left -= files;
    const slot = options.activeMs / batches;
    arrivals.push({ atMs: b === 0 ? 0 : Math.round(b * slot + rng.next() * slot * 0.5), files });
  }
  arrivals.sort((a, b) => a.atMs - b.atMs);
  return { faults, arrivals };
}
