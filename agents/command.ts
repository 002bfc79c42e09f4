import { basename, isAbsolute } from 'node:path';
import type { StepConfig } from '../config/types.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';

export type TemplateVars = Record<'file' | 'out' | 'doc_id' | 'run_name' | 'file_number' | 'step' | 'prev_out', string>;

// C0 and C1 controls and the Unicode line and paragraph separators: each can end a line somewhere.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$/;

/** Why a path taken from a document may not reach a command line, or undefined when it may. */
export function unsafePath(path: string): string | undefined {
  if (!isAbsolute(path)) return 'is not an absolute path';
  if (CONTROL.test(path)) return 'contains a control character (newline, tab, NUL, …)';
  if (path.split('/').some((part) => part === '..' || part === '.')) return 'contains a "." or ".." segment';
  if (path.length > 4096) return 'is longer than 4096 characters';
  return undefined;
}

/**
 * The template values for one step of one document. Everything comes from the document,
 * so everything is checked: a value that could change a command's meaning is refused,
 * never quoted or escaped (the argument vector reaches the program without a shell).
 */
export function templateVars(doc: DaqDocument, step: StepConfig, previous: StepConfig | undefined): TemplateVars {
  const refuse = (why: string) => new MeshError('DOCUMENT_MALFORMED', `${JSON.stringify(doc._id).slice(0, 120)}: ${why}`);
  // {doc_id} may be a command's argument of its own: it must not read as an option or end a line.
  if (CONTROL.test(doc._id) || doc._id.startsWith('-')) throw refuse('the document id contains a control character or starts with "-"');
  const fileProblem = unsafePath(doc.file);
  if (fileProblem) throw refuse(`file ${JSON.stringify(doc.file).slice(0, 120)} ${fileProblem}`);
  if (!SAFE_NAME.test(doc.run_name)) throw refuse(`run_name ${JSON.stringify(doc.run_name).slice(0, 120)} is not a plain name (letters, digits, _ . + -)`);
  if (!Number.isInteger(doc.file_number) || doc.file_number < 0) throw refuse(`file_number ${JSON.stringify(doc.file_number)} is not a non-negative integer`);
  const base = {
    file: doc.file,
    doc_id: doc._id,
    run_name: doc.run_name,
    // File numbers are written with three digits in DAQ file names (lg23b002_000).
    file_number: String(doc.file_number).padStart(3, '0'),
    step: step.name,
  };
  const prevRecord = previous ? (doc[previous.name] as { file?: unknown } | undefined) : undefined;
  const prevOut = typeof prevRecord?.file === 'string' ? prevRecord.file : doc.file;
  const prevProblem = unsafePath(prevOut);
  if (prevProblem) throw refuse(`${previous?.name}.file ${prevProblem}`);
  const out = fill(step.out, { ...base, out: '', prev_out: prevOut });
  const outProblem = unsafePath(out);
  if (outProblem) throw refuse(`the output path ${JSON.stringify(out)} ${outProblem}`);
  if (basename(out).startsWith('-')) throw refuse(`the output path ${JSON.stringify(out)} starts with "-"`);
  return { ...base, out, prev_out: prevOut };
}

/** Replaces each `{name}` by its value; values are data and are never re-scanned. */
export function fill(template: string, vars: TemplateVars): string {
  return template.replace(/\{(file|out|doc_id|run_name|file_number|step|prev_out)\}/g, (_, name: keyof TemplateVars) => vars[name]);
}

export function buildArgv(step: StepConfig, vars: TemplateVars): string[] {
  return step.run.map((arg) => fill(arg, vars));
}
