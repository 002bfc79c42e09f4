/**
 * Reads the bad-input corpus (test/corpus/*.json) and builds its entries into documents,
 * configs and file names. The corpus is data; this file only knows its small notations.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './server-process.js';

export interface Corpus<E> {
  description: string;
  entries: E[];
}

export function readCorpus<E, X = object>(name: string): Corpus<E> & X {
  return JSON.parse(readFileSync(join(repoRoot, 'test', 'corpus', name), 'utf8')) as Corpus<E> & X;
}

type Json = Record<string, unknown>;

export interface DocumentEntry {
  id: string;
  what: string;
  base: string;
  set?: Json;
  unset?: string[];
  generate?: Array<{ at: string; string?: number; unit?: string; prefix?: string; array?: number; item?: unknown; nested?: number }>;
  expect: 'skipped' | 'bad' | 'untouched' | 'runs' | 'refused';
  reason?: string;
}

/** Replaces `{name}` in every string of a JSON value. */
export function substitute<T>(value: T, vars: Record<string, string>): T {
  if (typeof value === 'string') return value.replace(/\{(\w+)\}/g, (all, name: string) => vars[name] ?? all) as T;
  if (Array.isArray(value)) return value.map((v) => substitute(v, vars)) as T;
  if (value && typeof value === 'object') {
    const out: Json = {};
    // defineProperty: a `__proto__` key stays an own key, as JSON.parse made it.
    for (const [k, v] of Object.entries(value))
      Object.defineProperty(out, k, { value: substitute(v, vars), enumerable: true, writable: true, configurable: true });
    return out as T;
  }
  return value;
}

function setPath(target: Json, path: string, value: unknown): void {
  const parts = path.split('.');
  let at = target;
  for (const part of parts.slice(0, -1)) {
    if (!at[part] || typeof at[part] !== 'object') at[part] = {};
    at = at[part] as Json;
  }
  Object.defineProperty(at, parts[parts.length - 1], { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The document of an entry, as the JSON text to send (a deep value built here could not even
 * be stringified by JSON.stringify: nested values are spliced in as text).
 */
export function documentBody(entry: DocumentEntry, bases: Record<string, Json>, vars: Record<string, string>): Buffer {
  const doc: Json = substitute({ ...bases[entry.base], _id: `corpus_${entry.id}` }, vars);
  for (const [k, v] of Object.entries(substitute(entry.set ?? {}, vars)))
    Object.defineProperty(doc, k, { value: v, enumerable: true, writable: true, configurable: true });
  for (const k of entry.unset ?? []) delete doc[k];
  const splices: Array<[string, string]> = [];
  for (const g of entry.generate ?? []) {
    if (g.string !== undefined) setPath(doc, g.at, (g.prefix ?? '') + (g.unit ?? 'a').repeat(Math.ceil(g.string / (g.unit ?? 'a').length)).slice(0, g.string));
    else if (g.array !== undefined)
      setPath(
        doc,
        g.at,
        Array.from({ length: g.array }, () => g.item),
      );
    else if (g.nested !== undefined) {
      const marker = `@nested:${splices.length}`;
      setPath(doc, g.at, marker);
      splices.push([JSON.stringify(marker), `${'{"a":'.repeat(g.nested)}1${'}'.repeat(g.nested)}`]);
    }
  }
  let text = JSON.stringify(doc);
  for (const [marker, json] of splices) text = text.replace(marker, json);
  // "@raw:…" values are sent as raw bytes (\xNN escapes), e.g. invalid UTF-8.
  const raw = /"@raw:((?:[^"\\]|\\\\)*)"/.exec(text);
  if (!raw) return Buffer.from(text, 'utf8');
  const bytes = Buffer.from(
    raw[1].replace(/\\\\x([0-9a-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
    'latin1',
  );
  return Buffer.concat([Buffer.from(text.slice(0, raw.index + 1), 'utf8'), bytes, Buffer.from(text.slice(raw.index + raw[0].length - 1), 'utf8')]);
}

export interface NameEntry {
  file: string;
  expect: 'literal' | 'bad';
  what: string;
  reason?: string;
}

export function hostileName(entry: NameEntry, vars: Record<string, string>): string {
  const long = /^@long:(\d+)$/.exec(entry.file);
  if (long) return `${vars.dir}/${'x'.repeat(Number(long[1]) - vars.dir.length - 1)}`;
  return substitute(entry.file, vars);
}

export interface ConfigEntry {
  name: string;
  what: string;
  set?: Json;
  delete?: string[];
  profile?: unknown;
  text?: string;
  args?: string[];
  expect: string;
}

/** Edits a valid config as the entry says; returns the config file's text and the profile's (if any). */
export function brokenConfig(entry: ConfigEntry, valid: Json): { config: string; profile?: string } {
  if (entry.text !== undefined) {
    const prefix = /^@config-with:\{(.*)\}$/s.exec(entry.text);
    return { config: prefix ? `{${prefix[1]}, ${JSON.stringify(valid).slice(1)}` : entry.text };
  }
  const config = structuredClone(valid);
  for (const [path, value] of Object.entries(entry.set ?? {})) setPath(config, path, value);
  for (const path of entry.delete ?? []) {
    const parts = path.split('.');
    const parent = parts.slice(0, -1).reduce<Json>((at, p) => at[p] as Json, config);
    delete parent[parts[parts.length - 1]];
  }
  if (entry.profile === undefined) return { config: JSON.stringify(config) };
  (config.sites as Json).alpha = 'alpha.json';
  const profile = typeof entry.profile === 'string' && entry.profile.startsWith('@text:') ? entry.profile.slice(6) : JSON.stringify(entry.profile);
  return { config: JSON.stringify(config), profile };
}

/** A Node stack trace line (`    at fn (file:line:col)`): what a clear error never shows. */
export const STACK_TRACE = /^\s+at .+:\d+:\d+\)?$/m;
