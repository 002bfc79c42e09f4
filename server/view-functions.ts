/**
 * Design-document functions for the embedded server's views: each map or reduce source is
 * compiled once and called directly, with the helpers CouchDB's query server offers, and the
 * built-in reductions `_sum`, `_count` and `_stats` with CouchDB's semantics.
 */
import { deepFreeze } from '../core/freeze.js';

export class BuiltInError extends Error {
  readonly status = 500;
  constructor(name: string) {
    super(`builtin ${name} function requires map values to be numbers or number arrays`);
    this.name = 'invalid_value';
  }
}

export function sum(values: unknown[]): number | number[] {
  let result: number | number[] = 0;
  for (const value of values) {
    if (typeof value === 'number') {
      if (typeof result === 'number') result += value;
      else result[0] += value;
    } else if (Array.isArray(value)) {
      const list: number[] = typeof result === 'number' ? [result] : result;
      value.forEach((n, j) => {
        if (typeof n !== 'number') throw new BuiltInError('_sum');
        list[j] = (list[j] ?? 0) + n;
      });
      result = list;
    } else {
      throw new BuiltInError('_sum');
    }
  }
  return result;
}

export type ReduceFunction = (keys: unknown, values: unknown[], rereduce: boolean) => unknown;

const BUILT_IN: Record<string, ReduceFunction> = {
  _sum: (_keys, values) => sum(values),
  _count: (_keys, values) => values.length,
  _stats: (_keys, values) => {
    const numbers = values as number[];
    return { sum: sum(numbers), min: Math.min(...numbers), max: Math.max(...numbers), count: numbers.length, sumsqr: numbers.reduce((a, n) => a + n * n, 0) };
  },
};

/** `_count` or `_sum` when the reduce source names that built-in (CouchDB matches on the prefix). */
export function builtInName(source: string): string | undefined {
  return Object.keys(BUILT_IN).find((name) => source.startsWith(name));
}

const compiled = new Map<string, (...args: unknown[]) => unknown>();

/** Compiles a design-document function once; `emit` is handed in per call. */
function compile(source: string): (...args: unknown[]) => unknown {
  let fn = compiled.get(source);
  if (!fn) {
    // Design documents are written by the server's admins; the function runs with only the
    // helpers CouchDB's query server offers (emit, sum, log, isArray, toJSON).
    fn = new Function('emit', 'sum', 'log', 'isArray', 'toJSON', `"use strict"; return (${source.replace(/;\s*$/, '')});`) as (...args: unknown[]) => unknown;
    if (compiled.size > 500) compiled.clear();
    compiled.set(source, fn);
  }
  return fn;
}

const noop = () => {};

export type Emit = (key: unknown, value: unknown) => void;

/** A map function bound to `emit`. The caller passes a document no map function may change. */
export function compileMap(source: string, emit: Emit): (doc: unknown) => void {
  return compile(source)(emit, sum, noop, Array.isArray, JSON.parse) as (doc: unknown) => void;
}

export function compileReduce(source: string): ReduceFunction {
  const builtIn = builtInName(source);
  if (builtIn) return BUILT_IN[builtIn];
  if (source.startsWith('_')) throw new Error(`${source} is not a supported reduce function.`);
  return compile(source)(noop, sum, noop, Array.isArray, JSON.parse) as ReduceFunction;
}

export { deepFreeze };
