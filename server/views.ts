/**
 * A faster map/reduce for the embedded server. PouchDB's Node build evaluates every map
 * function call in a fresh `vm` context, re-serialising the document into source code each
 * time: measured at about 4 ms per document per view, it made view indexing the embedded
 * server's main cost. Here each function is compiled once and called directly, with the
 * same semantics (the document is passed as a JSON copy, emit collects rows, `_sum`,
 * `_count` and `_stats` built in). It replaces `query`/`viewCleanup` on the embedded
 * server's PouchDB only; Apache CouchDB has its own view engine.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
type Mapper = (source: string | ((doc: unknown) => void), emit: (key: unknown, value: unknown) => void) => (doc: unknown) => void;
type Reducer = (source: string) => (keys: unknown, values: unknown[], rereduce: boolean) => unknown;
const createAbstractMapReduce = require('pouchdb-abstract-mapreduce') as (localDocName: string, mapper: Mapper, reducer: Reducer, ddocValidator: (ddoc: { _id: string; views?: Record<string, { map?: unknown }> }, viewName: string) => void) => { query: unknown; viewCleanup: unknown };

class BuiltInError extends Error {
  readonly status = 500;
  constructor(name: string) {
    super(`builtin ${name} function requires map values to be numbers or number arrays`);
    this.name = 'invalid_value';
  }
}

function sum(values: unknown[]): number | number[] {
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

const BUILT_IN: Record<string, (keys: unknown, values: unknown[]) => unknown> = {
  _sum: (_keys, values) => sum(values),
  _count: (_keys, values) => values.length,
  _stats: (_keys, values) => {
    const numbers = values as number[];
    return { sum: sum(numbers), min: Math.min(...numbers), max: Math.max(...numbers), count: numbers.length, sumsqr: numbers.reduce((a, n) => a + n * n, 0) };
  },
};

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

const mapper: Mapper = (source, emit) => {
  if (typeof source === 'function') return (doc) => (source as (d: unknown, e: typeof emit) => void)(doc, emit);
  const fn = compile(source)(emit, sum, noop, Array.isArray, JSON.parse) as (doc: unknown) => void;
  return (doc) => fn(JSON.parse(JSON.stringify(doc)));
};

const reducer: Reducer = (source) => {
  const builtIn = Object.keys(BUILT_IN).find((name) => source.startsWith(name));
  if (builtIn) return BUILT_IN[builtIn];
  if (source.startsWith('_')) throw new Error(`${source} is not a supported reduce function.`);
  return compile(source)(noop, sum, noop, Array.isArray, JSON.parse) as (keys: unknown, values: unknown[], rereduce: boolean) => unknown;
};

function ddocValidator(ddoc: { _id: string; views?: Record<string, { map?: unknown }> }, viewName: string): void {
  const view = ddoc.views?.[viewName];
  if (typeof view?.map !== 'string') {
    throw Object.assign(new Error(`ddoc ${ddoc._id} has no string view named ${viewName}, instead found object of type: ${typeof view?.map}`), { status: 404, name: 'not_found' });
  }
}

/** The plugin: `PouchDB.plugin(fastViews)` before any database is opened. */
export const fastViews = createAbstractMapReduce('mrviews', mapper, reducer, ddocValidator);
