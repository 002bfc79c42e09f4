import { basename } from 'node:path';
import type { StepConfig } from '../config/types.js';
import { type TemplateValues, expandParts, outTemplateProblems, parseTemplate, runArgumentProblems, unsafePath } from '../config/template.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';

export { unsafePath };
export type TemplateVars = TemplateValues;

// C0 and C1 controls and the Unicode line and paragraph separators: each can end a line somewhere.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** A run name that may be a command's argument of its own: no option, no line end, no path. */
export const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$/;

/**
 * The step's templates checked as the config loader checks them. A config built without the
 * loader (an API caller) can still hold a bad one; that is the configuration's fault, not the
 * document's: CONFIG_INVALID, with a reason starting "configuration:".
 */
export function checkStepTemplates(step: StepConfig): void {
  const problems = [
    ...outTemplateProblems(step.out).map((p) => `out ${JSON.stringify(step.out)}: ${p}`),
    ...step.run.flatMap((arg, i) => runArgumentProblems(arg).map((p) => `run[${i}] ${JSON.stringify(arg)}: ${p}`)),
  ];
  if (problems.length > 0)
    throw new MeshError(
      'CONFIG_INVALID',
      `configuration: step ${step.name}: ${problems.join('; ')}; fix the step in the mesh config, then mesh retry the documents`,
    );
}

/**
 * The template values for one step of one document. The step's templates are checked first
 * (CONFIG_INVALID: the config's fault); then everything that comes from the document, where a
 * value that could change a command's meaning is refused (DOCUMENT_MALFORMED), never quoted or
 * escaped (the argument vector reaches the program without a shell).
 */
export function templateVars(doc: DaqDocument, step: StepConfig, previous: StepConfig | undefined): TemplateVars {
  checkStepTemplates(step);
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
    // '' without a version: an `out` with {version} keeps each version's outputs apart.
    version: step.version ?? '',
  };
  const prevRecord = previous ? (doc[previous.name] as { file?: unknown } | undefined) : undefined;
  const prevOut = typeof prevRecord?.file === 'string' ? prevRecord.file : doc.file;
  const prevProblem = unsafePath(prevOut);
  if (prevProblem) throw refuse(`${previous?.name}.file ${prevProblem}`);
  // The template passed its checks: an unsafe result comes from a value of this document.
  const out = fill(step.out, { ...base, out: '', prev_out: prevOut });
  const outProblem = unsafePath(out);
  if (outProblem) throw refuse(`the output path ${JSON.stringify(out)} ${outProblem}`);
  if (basename(out).startsWith('-')) throw refuse(`the output path ${JSON.stringify(out)} starts with "-"`);
  return { ...base, out, prev_out: prevOut };
}

/** Replaces each `{name}` by its value, with the loader's parser; values are data and are never re-scanned. */
export function fill(template: string, vars: TemplateVars): string {
  const parsed = parseTemplate(template);
  if (!parsed.ok) throw new MeshError('CONFIG_INVALID', `configuration: template ${JSON.stringify(template)}: ${parsed.problem}`);
  return expandParts(parsed.parts, vars);
}

export function buildArgv(step: StepConfig, vars: TemplateVars): string[] {
  return step.run.map((arg) => fill(arg, vars));
}
