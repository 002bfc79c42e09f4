/**
 * The promises the harness checks after every round, on every server:
 * - final: every ingested document is `good` with every record ok, or `<step> failed` with a
 *   reason, with the same winning revision on both servers and no conflict left;
 * - no double run: every execution of a step program (one line in the run log) was granted its
 *   own claim — a history entry moving the document to `<step> in progress` (or, for a run a
 *   losing replication branch made, an entry of `duplicates[]`) — and none started after the
 *   step's success was recorded. A run after a failure, a kill, a lost job or an expired lease
 *   comes with a new claim, so it is a retry, not a double run — unless it overlaps in time
 *   with an earlier run of the same (document, step) that was still alive (a killed agent's
 *   orphaned step): only a cross-server double claim kept in `duplicates[]` may overlap;
 * - duplicates kept: every `duplicates[]` entry names its step, revision and site or agent;
 * - nothing lost: every ingested id on every server, every record once ok still ok with the same
 *   checksum;
 * - outputs: every file under a step's output folder (not a `.part`) is the file of an ok record
 *   with the same sha256, and every ok record's file exists with its recorded sha256.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { MeshConfig } from '../../config/types.js';
import type { Database } from '../../store/database.js';
import { type DaqDocument, parseStatus, stepRecord } from '../../core/document.js';
import { isComplete } from '../../core/state.js';

export interface Violation {
  invariant: 'final' | 'double-run' | 'duplicates' | 'lost' | 'output' | 'process';
  detail: string;
}

export type Snapshot = Map<string, Map<string, DaqDocument>>;

/** Every ingested document on every server, with its conflicts. */
export async function readEverywhere(config: MeshConfig, open: (site: string) => Database, ids: readonly string[]): Promise<Snapshot> {
  const snapshot: Snapshot = new Map();
  for (const site of ['modane', 'kit']) {
    const docs = new Map<string, DaqDocument>();
    for (let i = 0; i < ids.length; i += 500) {
      const { rows } = await open(site).allDocs<DaqDocument>({ include_docs: true, conflicts: true }, ids.slice(i, i + 500) as string[]);
      for (const row of rows) if (row.doc) docs.set(row.id as string, row.doc);
    }
    snapshot.set(site, docs);
  }
  return snapshot;
}

/** A status that no agent will move any more without an operator. */
export function isFinal(doc: DaqDocument, config: MeshConfig): boolean {
  if (isComplete(doc, config)) return true;
  const parsed = parseStatus(
    doc.status,
    config.steps.map((s) => s.name),
  );
  return parsed?.kind === 'failed' && typeof stepRecord(doc, parsed.step as string)?.reason === 'string';
}

/** Documents not yet final and identical everywhere, with why (empty once settled). */
export function unsettled(config: MeshConfig, snapshot: Snapshot, ids: readonly string[]): string[] {
  const problems: string[] = [];
  for (const id of ids) {
    const copies = [...snapshot].map(([site, docs]) => [site, docs.get(id)] as const);
    const missing = copies.filter(([, d]) => !d).map(([site]) => site);
    if (missing.length > 0) {
      problems.push(`${id}: missing on ${missing.join(', ')}`);
      continue;
    }
    const docs = copies.map(([site, d]) => [site, d as DaqDocument] as const);
    const notFinal = docs.filter(([, d]) => !isFinal(d, config) || (d._conflicts?.length ?? 0) > 0);
    if (notFinal.length > 0)
      problems.push(
        `${id}: ${notFinal.map(([site, d]) => `${site} "${d.status}"${d._conflicts?.length ? ` +${d._conflicts.length} conflicts` : ''}`).join(', ')}`,
      );
    else if (new Set(docs.map(([, d]) => d._rev)).size > 1)
      problems.push(`${id}: revisions differ (${docs.map(([site, d]) => `${site} ${d._rev}`).join(', ')})`);
  }
  return problems;
}

/** One line of the run log (examples/steps/fault-switch.mjs); a line without `phase` is a start. */
export interface RunLogLine {
  program: string;
  input: string | null;
  pid: number;
  at: string;
  phase?: 'start' | 'alive' | 'end';
  /** The `at` of the run's start line, on its `alive` and `end` lines. */
  started?: string;
}

/** One execution of a step program: from its start to its last sign of life (its end, if it wrote one). */
export interface RunSpan {
  program: string;
  input: string | null;
  pid: number;
  start: number;
  /** A run killed by a signal writes no end: it ran at least until here. */
  last: number;
  ended: boolean;
}

export async function readRunLog(path: string): Promise<RunLogLine[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as RunLogLine);
}

/** The runs in a run log, in the order they started. */
export function runSpans(lines: readonly RunLogLine[]): RunSpan[] {
  const spans = new Map<string, RunSpan>();
  for (const line of lines) {
    const started = line.started ?? line.at;
    const key = `${line.pid} ${started}`;
    const span = spans.get(key) ?? {
      program: line.program,
      input: line.input,
      pid: line.pid,
      start: Date.parse(started),
      last: Date.parse(started),
      ended: false,
    };
    span.last = Math.max(span.last, Date.parse(line.at));
    if (line.phase === 'end') span.ended = true;
    spans.set(key, span);
  }
  return [...spans.values()].sort((a, b) => a.start - b.start);
}

/** Pairs of runs (of one document and step) where the later one started while the earlier still ran. */
export function overlappingRuns(spans: readonly RunSpan[]): Array<[RunSpan, RunSpan]> {
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  const pairs: Array<[RunSpan, RunSpan]> = [];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j].start < sorted[i].last; j++) pairs.push([sorted[i], sorted[j]]);
  }
  return pairs;
}

/** The step program of each step (`convert` for a `run` holding …/convert.mjs); the built-in SFTP transfer has none. */
export function stepPrograms(config: MeshConfig): Map<string, string> {
  const programs = new Map<string, string>();
  for (const step of config.steps) {
    const script = (step.run ?? []).find((arg) => arg.endsWith('.mjs'));
    if (script) programs.set(basename(script, '.mjs'), step.name);
  }
  return programs;
}

/** The document an input file belongs to: `lg23b000_005` or `lg23b000_005.txt` → `run_lg23b000_005`. */
export function docOfInput(input: string): string {
  return `run_${basename(input).replace(/\.[a-z]+$/, '')}`;
}

interface DuplicateEntry {
  step?: unknown;
  rev?: unknown;
  site?: unknown;
  agent?: unknown;
}

function duplicatesOf(doc: DaqDocument): DuplicateEntry[] {
  return Array.isArray(doc.duplicates) ? (doc.duplicates as DuplicateEntry[]) : [];
}

/** Runs per (document, step) against the claims recorded for them; see the file comment. */
export function checkRuns(config: MeshConfig, docs: Map<string, DaqDocument>, runs: readonly RunLogLine[]): Violation[] {
  const programs = stepPrograms(config);
  const byKey = new Map<string, RunSpan[]>();
  for (const run of runSpans(runs)) {
    const step = programs.get(run.program);
    if (!step || !run.input) continue;
    const key = `${docOfInput(run.input)}\u0000${step}`;
    byKey.set(key, [...(byKey.get(key) ?? []), run]);
  }
  const at = (ms: number) => new Date(ms).toISOString();
  const violations: Violation[] = [];
  for (const [key, list] of byKey) {
    const [id, step] = key.split('\u0000');
    const doc = docs.get(id);
    if (!doc) {
      violations.push({ invariant: 'double-run', detail: `${step} ran ${list.length}× for ${id}, a document that does not exist` });
      continue;
    }
    const duplicates = duplicatesOf(doc).filter((d) => d.step === step).length;
    const claims = (doc.history ?? []).filter((h) => h.to === `${step} in progress`).length + duplicates;
    if (list.length > claims)
      violations.push({
        invariant: 'double-run',
        detail: `${id} ${step}: ${list.length} runs for ${claims} claims (runs at ${list.map((r) => at(r.start)).join(', ')})`,
      });
    const overlaps = overlappingRuns(list);
    if (overlaps.length > duplicates) {
      const shown = overlaps.map(([a, b]) => `pid ${a.pid} started ${at(a.start)} still ran at ${at(a.last)}, pid ${b.pid} started ${at(b.start)}`);
      violations.push({
        invariant: 'double-run',
        detail: `${id} ${step}: ${overlaps.length} overlapping run(s) for ${duplicates} cross-server duplicate(s): ${shown.join('; ')}`,
      });
    }
    const record = stepRecord(doc, step);
    if (record?.ok === true && record.finished) {
      const late = list.filter((r) => r.start > Date.parse(record.finished as string));
      if (late.length > 0)
        violations.push({
          invariant: 'double-run',
          detail: `${id} ${step}: ran again at ${late.map((r) => at(r.start)).join(', ')} after its success at ${record.finished}`,
        });
    }
  }
  return violations;
}

export function checkDuplicates(docs: Map<string, DaqDocument>): Violation[] {
  const violations: Violation[] = [];
  for (const doc of docs.values()) {
    for (const d of duplicatesOf(doc)) {
      if (typeof d.step !== 'string' || typeof d.rev !== 'string' || (typeof d.site !== 'string' && typeof d.agent !== 'string')) {
        violations.push({ invariant: 'duplicates', detail: `${doc._id}: a duplicates[] entry without its provenance: ${JSON.stringify(d)}` });
      }
    }
  }
  return violations;
}

/** Ok records seen so far: document → step → sha256 ('' when the step records no file). */
export type OkRecords = Map<string, Map<string, string>>;

export function checkNothingLost(config: MeshConfig, snapshot: Snapshot, ids: readonly string[], seenOk: OkRecords): Violation[] {
  const violations: Violation[] = [];
  for (const [site, docs] of snapshot) {
    for (const id of ids) {
      const doc = docs.get(id);
      if (!doc) {
        violations.push({ invariant: 'lost', detail: `${id} is missing on ${site}` });
        continue;
      }
      for (const [step, sha] of seenOk.get(id) ?? []) {
        const record = stepRecord(doc, step);
        if (record?.ok !== true)
          violations.push({ invariant: 'lost', detail: `${site} ${id}: ${step} was ok, now ${JSON.stringify(record?.ok)} ("${doc.status}")` });
        else if ((record.checksum?.sha256 ?? '') !== sha)
          violations.push({ invariant: 'lost', detail: `${site} ${id}: ${step} checksum changed from ${sha} to ${record.checksum?.sha256}` });
      }
    }
  }
  return violations;
}

/** Remembers every ok record of these documents (for the next round's check). */
export function rememberOk(config: MeshConfig, docs: Map<string, DaqDocument>, seenOk: OkRecords): void {
  for (const doc of docs.values()) {
    for (const step of config.steps) {
      const record = stepRecord(doc, step.name);
      if (record?.ok !== true) continue;
      if (!seenOk.has(doc._id)) seenOk.set(doc._id, new Map());
      seenOk.get(doc._id)?.set(step.name, record.checksum?.sha256 ?? '');
    }
  }
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) files.push(...(await filesUnder(path)));
    else if (e.isFile()) files.push(path);
  }
  return files;
}

/** Output folders of the steps: the fixed folder part of each `out` template. */
export function outputFolders(config: MeshConfig): Map<string, string> {
  return new Map(config.steps.map((s) => [s.name, dirname(s.out)]));
}

export async function checkOutputs(config: MeshConfig, docs: Map<string, DaqDocument>): Promise<Violation[]> {
  const violations: Violation[] = [];
  const claimed = new Set<string>();
  for (const [step, folder] of outputFolders(config)) {
    for (const file of await filesUnder(folder)) {
      if (file.endsWith('.part')) continue;
      const id = docOfInput(file);
      const record = docs.get(id) && stepRecord(docs.get(id) as DaqDocument, step);
      claimed.add(file);
      if (record?.ok !== true || record.file !== file) {
        violations.push({ invariant: 'output', detail: `${file} exists but ${id}.${step} ${record?.ok === true ? `names ${record.file}` : 'is not ok'}` });
        continue;
      }
      const actual = await sha256(file);
      if (record.checksum?.sha256 !== actual)
        violations.push({ invariant: 'output', detail: `${file}: sha256 ${actual} but ${id}.${step}.checksum is ${record.checksum?.sha256}` });
    }
  }
  for (const doc of docs.values()) {
    for (const step of config.steps) {
      const record = stepRecord(doc, step.name);
      if (record?.ok !== true || typeof record.file !== 'string' || claimed.has(record.file)) continue;
      const exists = await stat(record.file).then(
        (s) => s.isFile(),
        () => false,
      );
      violations.push({
        invariant: 'output',
        detail: `${doc._id}.${step.name} is ok but its file ${record.file} ${exists ? 'is outside the output folder' : 'does not exist'}`,
      });
    }
  }
  return violations;
}
