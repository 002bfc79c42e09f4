/**
 * Header fields that only the DAQ file knows (the DAQ host, the run's start, …), read by the
 * configured `ingest.metadata` program when a file is catalogued: one run per new file, without
 * a shell, in a minimal environment, stdin closed, bounded in time and output; what it prints
 * (one JSON object) is merged into the new document unless it names a field the mesh owns.
 * Any failure leaves the file uncatalogued for this scan, with the reason: the next scan
 * tries again, and nothing is half-written.
 */
import { spawn } from 'node:child_process';
import type { TemplateValues } from '../config/template.js';
import { metadataArgumentProblems } from '../config/template.js';
import { type DaqDocument, MESH_FIELDS, documentProblems } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import { CATALOGUE_FIELDS } from '../core/provenance.js';
import { fill } from './command.js';
import { stepSupervisor } from './step-supervisor.js';

/** Fields of the state machine and of the catalogue; with `_*` and the step names, the program may set none. */
const RESERVED = Object.freeze([...MESH_FIELDS, ...CATALOGUE_FIELDS]);

/** More than this on stdout is no header: the program is killed. */
export const STDOUT_LIMIT = 1 << 20;
const STDERR_KEEP = 2000;

/** setpriv's exit statuses when it cannot execute the program (126) or finds none (127). */
const EXEC_FAILED = new Set([126, 127]);

export type MergeResult = { ok: true; doc: DaqDocument } | { ok: false; reason: string };
export type MetadataOutcome = { ok: true; stdout: string } | { ok: false; reason: string };

/** Whether the metadata program may not set `key`: CouchDB's `_` fields, the state machine's, the catalogue's, a step record. */
export function isReservedKey(key: string, stepNames: readonly string[]): boolean {
  return key.startsWith('_') || RESERVED.includes(key) || stepNames.includes(key);
}

// C0 and C1 controls and the Unicode line and paragraph separators: a reason is one line.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** `text` as one line of at most `max` characters (its end kept when `fromEnd`). */
function oneLine(text: string, max: number, fromEnd = false): string {
  const line = text.replace(CONTROLS, ' ').trim();
  if (line.length <= max) return line;
  return fromEnd ? `…${line.slice(-max)}` : `${line.slice(0, max)}…`;
}

/** `text` quoted as JSON, with the line ends JSON leaves raw (U+2028, U+2029, C1 controls) escaped too. */
function quote(text: string): string {
  return JSON.stringify(text).replace(CONTROLS, (run) => [...run].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''));
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a JSON array';
  return `a JSON ${typeof value}`;
}

/**
 * The new document with the program's output merged in, or why it cannot be. The output must be
 * exactly one JSON object; its values are kept as they are, nested ones included; a reserved key
 * is refused, never dropped. The reason reads after the program's name ("… sets reserved keys").
 */
export function mergeMetadata(doc: DaqDocument, output: string, stepNames: readonly string[]): MergeResult {
  if (output.trim() === '') return { ok: false, reason: 'printed nothing, expected one JSON object' };
  let value: unknown;
  try {
    value = JSON.parse(output);
  } catch (error) {
    return {
      ok: false,
      reason: `printed ${quote(output.slice(0, 60))}${output.length > 60 ? '…' : ''}, which is not one JSON object (${oneLine((error as Error).message, 200)})`,
    };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: `printed ${describe(value)}, expected one JSON object` };
  const fields = value as Record<string, unknown>;
  const reserved = Object.keys(fields).filter((key) => isReservedKey(key, stepNames));
  if (reserved.length > 0) {
    const shown = reserved
      .slice(0, 5)
      .map((k) => quote(k.slice(0, 40)))
      .join(', ');
    return {
      ok: false,
      reason: `sets reserved key${reserved.length > 1 ? 's' : ''} ${shown}${reserved.length > 5 ? ', …' : ''}: fields starting with "_", ${RESERVED.join(', ')} and the step names (${stepNames.join(', ')}) belong to the mesh; rename them`,
    };
  }
  const merged: DaqDocument = { ...doc, ...fields };
  // What an agent would refuse to handle must not be catalogued (e.g. values nested too deep).
  const problems = documentProblems(merged, stepNames);
  if (problems.length > 0) return { ok: false, reason: `printed fields that make the document malformed: ${problems.join('; ')}` };
  return { ok: true, doc: merged };
}

/** Refuses an argument vector the loader would refuse (a config built in code): the configuration's fault. */
export function checkMetadataArgv(argv: readonly string[]): void {
  const problems = argv.flatMap((arg, i) => metadataArgumentProblems(arg).map((p) => `ingest.metadata[${i}] ${JSON.stringify(arg)}: ${p}`));
  if (argv.length === 0 || argv.some((a) => a.length === 0)) problems.push('ingest.metadata must be a non-empty argument vector of non-empty strings');
  if (problems.length > 0) throw new MeshError('CONFIG_INVALID', `configuration: ${problems.join('; ')}; fix the mesh config`);
}

/** The argument vector for one file; values are data, never re-scanned, and reach the program without a shell. */
export function metadataArgv(argv: readonly string[], file: { path: string; id: string; runName: string; fileNumber: number }): string[] {
  const values: TemplateValues = {
    file: file.path,
    doc_id: file.id,
    run_name: file.runName,
    // Three digits, as in DAQ file names and in the steps' {file_number}.
    file_number: String(file.fileNumber).padStart(3, '0'),
    // Refused in ingest.metadata by checkMetadataArgv: a new file has no output and no step yet.
    out: '',
    step: '',
    prev_out: '',
    version: '',
  };
  return argv.map((arg) => fill(arg, values));
}

/** The last lines of stderr, as one line. */
function stderrTail(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => oneLine(l, Infinity))
    .filter(Boolean);
  return oneLine(lines.slice(-3).join(' | '), 300, true);
}

export interface MetadataRunOptions {
  timeoutMs: number;
  env: Record<string, string>;
  /** Aborting kills the program; the outcome is a failure ("interrupted"). */
  signal?: AbortSignal;
}

/**
 * Runs the metadata program for one file. It leads its own process group, registered with the
 * step supervisor so that it dies with this process; the group is killed when the program
 * exits (what it left running goes with it), at the timeout, and when stdout passes
 * STDOUT_LIMIT. Resolves in every case; a failure's reason reads after the program's name.
 */
export function runMetadataProgram(argv: readonly string[], options: MetadataRunOptions): Promise<MetadataOutcome> {
  stepSupervisor.start();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let stopped: string | undefined;
    let exited = false;
    let settled = false;
    const wrapped = stepSupervisor.wrap(argv);
    const child = spawn(wrapped[0], wrapped.slice(1), { env: options.env, stdio: ['ignore', 'pipe', 'pipe'], shell: false, detached: true });
    const pgid = child.pid;
    if (pgid !== undefined) stepSupervisor.register(pgid);
    const killGroup = () => {
      if (pgid === undefined) return;
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // ESRCH: nothing of the group is left.
      }
    };
    // Closing our ends too: a descendant that left the group cannot hold the run open.
    const stop = (why: string) => {
      stopped ??= why;
      killGroup();
      child.stdout.destroy();
      child.stderr.destroy();
    };
    const timer = setTimeout(() => {
      const seconds = options.timeoutMs / 1000;
      stop(
        exited
          ? `exited, but a process it started outside its group held its output open after ${seconds} s`
          : `was still running after ${seconds} s: killed with its process group`,
      );
    }, options.timeoutMs);
    const onAbort = () => stop('was interrupted (the scan is stopping)');
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (outcome: MetadataOutcome) => {
      if (settled) return;
      settled = true;
      killGroup();
      if (pgid !== undefined) stepSupervisor.unregister(pgid);
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > STDOUT_LIMIT) stop(`printed more than ${STDOUT_LIMIT / (1 << 20)} MiB on stdout: killed`);
      else chunks.push(chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_KEEP)));
    child.once('exit', () => {
      exited = true;
      killGroup();
    });
    child.once('error', (error) => finish({ ok: false, reason: `could not be started: ${error.message}` }));
    child.once('close', (code, signal) => {
      const tail = stderrTail(stderr);
      const said = tail ? ` (stderr: ${tail})` : '';
      if (stopped) return finish({ ok: false, reason: `${stopped}${said}` });
      const notRun = stderr.split('\n').find((l) => l.startsWith('setpriv: failed to execute'));
      if (code !== null && EXEC_FAILED.has(code) && notRun) return finish({ ok: false, reason: `could not be started: ${notRun.slice('setpriv: '.length)}` });
      if (signal) return finish({ ok: false, reason: `was killed by ${signal}${said}` });
      if (code !== 0) return finish({ ok: false, reason: `exited with ${code}${said}` });
      finish({ ok: true, stdout: Buffer.concat(chunks).toString('utf8') });
    });
  });
}
