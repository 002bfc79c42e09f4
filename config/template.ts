/**
 * The step templates (`out`, each `run` argument): one parser, used by the config loader to
 * refuse a bad template before anything starts and by the agents to expand it for a document,
 * so that what was accepted at load time is exactly what runs.
 */
import { isAbsolute } from 'node:path';

export const PLACEHOLDERS = ['file', 'out', 'doc_id', 'run_name', 'file_number', 'step', 'prev_out', 'version'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type TemplateValues = Record<Placeholder, string>;
/** A placeholder's name: one of PLACEHOLDERS for a file step, of RUN_PLACEHOLDERS for a run step (config/run-steps.ts). */
export type TemplatePart = { literal: string } | { placeholder: string };

export type ParsedTemplate = { ok: true; parts: TemplatePart[] } | { ok: false; problem: string };

/** The expected form of any template, for messages. */
export const PLACEHOLDER_FORM = `placeholders among {${PLACEHOLDERS.join('}, {')}}, each brace closed`;

/** `out` must name one file per document: one of these alone does, or {run_name} with {file_number}. */
const UNIQUE_ALONE: readonly Placeholder[] = ['doc_id', 'file', 'prev_out'];

// C0 and C1 controls and the Unicode line and paragraph separators: each can end a line somewhere.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Splits a template into literal text and placeholders (`names`, default a file step's); a stray or unclosed brace is a problem. */
export function parseTemplate(template: string, names: readonly string[] = PLACEHOLDERS): ParsedTemplate {
  const parts: TemplatePart[] = [];
  let at = 0;
  // Each turn consumes at least one character, so the loop ends.
  while (at < template.length) {
    const open = template.indexOf('{', at);
    const close = template.indexOf('}', at);
    if (close !== -1 && (open === -1 || close < open)) return { ok: false, problem: `a "}" at position ${close} closes no "{"` };
    if (open === -1) {
      parts.push({ literal: template.slice(at) });
      break;
    }
    if (open > at) parts.push({ literal: template.slice(at, open) });
    const end = template.indexOf('}', open);
    if (end === -1) return { ok: false, problem: `the "{" at position ${open} is never closed` };
    const name = template.slice(open + 1, end);
    if (name.includes('{')) return { ok: false, problem: `the "{" at position ${open} is never closed` };
    if (!names.includes(name)) return { ok: false, problem: `unknown placeholder {${name}}` };
    parts.push({ placeholder: name });
    at = end + 1;
  }
  return { ok: true, parts };
}

/** Joins the parts with the values; values are data and are never re-scanned for braces. */
export function expandParts(parts: readonly TemplatePart[], values: Readonly<Record<string, string>>): string {
  return parts.map((part) => ('literal' in part ? part.literal : (values[part.placeholder] ?? ''))).join('');
}

/** Why a path may not reach a command line, or undefined when it may. */
export function unsafePath(path: string): string | undefined {
  if (!isAbsolute(path)) return 'is not an absolute path';
  if (CONTROL.test(path)) return 'contains a control character (newline, tab, NUL, …)';
  if (path.split('/').some((part) => part === '..' || part === '.')) return 'contains a "." or ".." segment';
  if (path.length > 4096) return 'is longer than 4096 characters';
  return undefined;
}

/**
 * Values standing for any document's. Each has the shape every real value is held to
 * (absolute paths for files, plain names otherwise), so a problem of the expansion is the
 * template's, never the document's.
 */
const SAMPLE: TemplateValues = {
  file: '/sample/file',
  prev_out: '/sample/prev_out',
  out: '/sample/out',
  doc_id: 'sample_doc',
  run_name: 'sample',
  file_number: '000',
  step: 'sample',
  version: 'sample',
};

/** Problems of an argument template of `run`; an empty list when it is fine. */
export function runArgumentProblems(template: string): string[] {
  const parsed = parseTemplate(template);
  if (!parsed.ok) return [parsed.problem];
  return CONTROL.test(template) ? ['a control character'] : [];
}

/** The placeholders of `ingest.metadata`: what a file has before any step ran. */
export const METADATA_PLACEHOLDERS: readonly Placeholder[] = Object.freeze(['file', 'run_name', 'file_number', 'doc_id']);

/** The expected form of an `ingest.metadata` argument, for messages. */
export const METADATA_ARGUMENT_FORM = `an argument with placeholders among {${METADATA_PLACEHOLDERS.join('}, {')}}, each brace closed`;

/** Problems of an argument template of `ingest.metadata`: a run argument's, with only the placeholders a new file has. */
export function metadataArgumentProblems(template: string): string[] {
  const parsed = parseTemplate(template);
  if (!parsed.ok) return [parsed.problem];
  const problems = parsed.parts.flatMap((p) =>
    'placeholder' in p && !(METADATA_PLACEHOLDERS as readonly string[]).includes(p.placeholder)
      ? [`{${p.placeholder}}, which a file being catalogued does not have yet`]
      : [],
  );
  return CONTROL.test(template) ? [...problems, 'a control character'] : problems;
}

/** Problems of the `out` template: a safe absolute path, one file per document, never the input itself. */
export function outTemplateProblems(template: string): string[] {
  const parsed = parseTemplate(template);
  if (!parsed.ok) return [parsed.problem];
  const used = new Set(parsed.parts.flatMap((p) => ('placeholder' in p ? [p.placeholder] : [])));
  const problems: string[] = [];
  if (used.has('out')) problems.push('{out} inside out itself');
  const sample = expandParts(parsed.parts, SAMPLE);
  const pathProblem = unsafePath(sample);
  if (pathProblem) problems.push(`the path ${pathProblem}`);
  // The file name part: a leading "-" would read as an option of the step's program.
  const lastLiteral = template.slice(template.lastIndexOf('/') + 1);
  if (lastLiteral.startsWith('-')) problems.push('a file name starting with "-"');
  if (!UNIQUE_ALONE.some((p) => used.has(p)) && !(used.has('run_name') && used.has('file_number')))
    problems.push('no per-document placeholder, so every document would write the same file');
  if (parsed.parts.length === 1 && 'placeholder' in parsed.parts[0] && (parsed.parts[0].placeholder === 'file' || parsed.parts[0].placeholder === 'prev_out'))
    problems.push('the input file itself, which the step would overwrite');
  return problems;
}

/** The expected form of `out`, for messages. */
export const OUT_FORM = `an absolute output path template with ${PLACEHOLDER_FORM}, naming one file per document ({doc_id}, {file}, {prev_out}, or {run_name} with {file_number}), its file name not starting with "-", e.g. "/data/raw/{run_name}_{file_number}"`;
