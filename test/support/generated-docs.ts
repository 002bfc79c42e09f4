/**
 * Documents the state machine can produce: a breadth-first walk of `transition()` from a
 * freshly closed document over every event, at two clock readings (before and after the
 * claim leases run out). Used to check that the server-side rules accept everything the
 * agents can write.
 */
import type { DaqDocument } from '../../core/document.js';
import type { UserContext } from '../../core/roles.js';
import { type MeshEvent, type PipelineSteps, transition } from '../../core/state.js';
import type { WritePolicy } from '../../core/write-rules.js';

export const DOC_TYPE = 'daqdocument';
export const PIPELINE: PipelineSteps = {
  steps: [
    { name: 'proc0', max_attempts: 2 },
    { name: 'proc1', max_attempts: 2 },
    { name: 'proc2', max_attempts: 1 },
  ],
};
export const STEP_NAMES = PIPELINE.steps.map((s) => s.name);
/** The generated events run every step at lyon and kit; modane catalogues. */
export const POLICY: WritePolicy = {
  docType: DOC_TYPE,
  steps: STEP_NAMES,
  stepSites: { proc0: ['lyon', 'kit'], proc1: ['lyon', 'kit'], proc2: ['lyon', 'kit'] },
  ingestSites: ['modane'],
};
/** The embedded server without accounts. */
export const ADMIN_PARTY: UserContext = { name: null, roles: ['_admin'] };
/** The coordinator's account, which carries replicated writes. */
export const COORDINATOR: UserContext = { name: 'coordinator', roles: ['mesh-coordinator'] };

const T0 = Date.parse('2026-11-26T10:00:00.000Z');
export const CLOCKS = [new Date(T0), new Date(T0 + 3_600_000)];
const LEASE = new Date(T0 + 60_000).toISOString();
const RETRY_AFTER = new Date(T0 + 120_000).toISOString();

export function freshDoc(id = 'run_lg23b002_000'): DaqDocument {
  return {
    _id: id,
    type: DOC_TYPE,
    run_name: 'lg23b002',
    file_number: 0,
    file: '/data/samba/lg23b002/lg23b002_000',
    size_in_bytes: 100,
    date_closed: new Date(T0).toISOString(),
    status: 'closed',
    history: [{ at: new Date(T0).toISOString(), from: null, to: 'closed', by: 'modane/ingest', user: null }],
  };
}

export function allEvents(): MeshEvent[] {
  const events: MeshEvent[] = [{ type: 'mark_bad', by: 'op', reason: 'broken' }];
  for (const step of STEP_NAMES) {
    for (const mode of ['run', 'queue'] as const) {
      events.push({ type: 'claim', step, mode, site: 'lyon', agent: 'a1', host: 'h', lease_until: LEASE });
      events.push({ type: 'claim', step, mode, site: 'kit', agent: 'a2', host: 'h', lease_until: LEASE });
    }
    events.push(
      { type: 'start', step, site: 'lyon', agent: 'a1', host: 'h', lease_until: LEASE },
      { type: 'renew', step, agent: 'a1', lease_until: LEASE },
      { type: 'succeed', step, agent: 'a1', result: { exit_code: 0, duration_s: 1 } },
      { type: 'fail', step, agent: 'a1', reason: 'exit 1', result: { exit_code: 1, stderr_tail: 'oops' }, retry_after: RETRY_AFTER },
      { type: 'release', step, agent: 'a1' },
      { type: 'expire', step, by: 'sweeper' },
      { type: 'lost', step, by: 'sweeper', reason: 'job vanished' },
      { type: 'retry', step, by: 'op' },
    );
  }
  return events;
}

/** Identity of a state, ignoring the history log. */
function signature(doc: DaqDocument): string {
  const { history: _history, ...rest } = doc;
  return JSON.stringify(rest);
}

export interface Reachable {
  docs: DaqDocument[];
  /** Single legal transitions (old, new). */
  edges: Array<[DaqDocument, DaqDocument]>;
  /** For each doc (by index), the indices of the docs one transition away. */
  next: number[][];
}

/**
 * Runs `fn` with stack traces off: walking the state machine tries every event and most are
 * illegal, each an error whose stack capture was most of the walk's time (not part of any check).
 */
function withoutStacks<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export function reachable(limit = 5000): Reachable {
  return withoutStacks(() => walk(limit));
}

function walk(limit: number): Reachable {
  const docs: DaqDocument[] = [freshDoc()];
  const index = new Map<string, number>([[signature(docs[0]), 0]]);
  const edges: Array<[DaqDocument, DaqDocument]> = [];
  const next: number[][] = [[]];
  const events = allEvents();
  for (let i = 0; i < docs.length && docs.length < limit; i++) {
    for (const now of CLOCKS) {
      for (const event of events) {
        const result = transition(docs[i], event, now, PIPELINE);
        if (!result.ok) continue;
        edges.push([docs[i], result.doc]);
        const key = signature(result.doc);
        let j = index.get(key);
        if (j === undefined) {
          j = docs.length;
          index.set(key, j);
          docs.push(result.doc);
          next.push([]);
        }
        if (!next[i].includes(j)) next[i].push(j);
      }
    }
  }
  return { docs, edges, next };
}

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pairs (old, new) separated by 2–6 transitions, walked for real (so histories chain): what a replicated write may carry. */
export function collapsedPairs(r: Reachable, count: number, seed = 1): Array<[DaqDocument, DaqDocument]> {
  return withoutStacks(() => collapsedWalk(r, count, seed));
}

function collapsedWalk(r: Reachable, count: number, seed: number): Array<[DaqDocument, DaqDocument]> {
  const random = prng(seed);
  const events = allEvents();
  const pairs: Array<[DaqDocument, DaqDocument]> = [];
  for (let n = 0; n < count; n++) {
    const start = r.docs[Math.floor(random() * r.docs.length)];
    let at = start;
    const steps = 2 + Math.floor(random() * 5);
    for (let s = 0, tries = 0; s < steps && tries < 200; tries++) {
      const result = transition(at, events[Math.floor(random() * events.length)], CLOCKS[Math.floor(random() * CLOCKS.length)], PIPELINE);
      if (!result.ok) continue;
      at = { ...result.doc, _rev: `${s + 2}-walk` };
      s++;
    }
    pairs.push([start, at]);
  }
  return pairs;
}
