/**
 * `_design/proc`, the design document the original Edelweiss scripts' tools query (the config's
 * `original_design` names it): their views and filters under their names, with their keys and
 * values, generated from the same pipeline as `_design/mesh`. Every function is ES5 source text
 * (see es5.ts); the pipeline is embedded in it as JSON literals.
 *
 * The originals key a file by `RF`, `<run_name>_<file_number on at least 3 digits>`
 * (`lg23b002_007`), so that a string range selects runs: `proc2?startkey="lg23b002"&endkey="lh18c005"`.
 * A step is "present" when the document has a truthy record of its name at the top level, as
 * the originals read it: their records have no `ok` flag, a record was written once its step
 * succeeded. CouchMesh keeps it so: the records of unfinished steps are under `pending`
 * (core/document.ts), and the server refuses a top-level record that is not a success.
 */
import { createHash } from 'node:crypto';
import { inProgressView } from '../config/step-names.js';
import type { MeshConfig } from '../config/types.js';
import { ORIGINAL_DESIGN_DEFAULT, originalDesignProblem } from '../config/validate.js';
import { MeshError } from '../core/errors.js';
import { type DesignInput, GENERATOR_VERSION, type ViewSource, checkDesignInput } from './design.js';

/** The pipeline and, optionally, the design's name (`proc` when absent). */
export type OriginalDesignInput = DesignInput & Partial<Pick<MeshConfig, 'original_design'>>;

export interface OriginalDesignDocument {
  /** `_design/<original_design>`. */
  _id: string;
  _rev?: string;
  language: 'javascript';
  views: Record<string, ViewSource>;
  filters: Record<string, string>;
  mesh: { generated_from: string };
}

/** Helpers of every map function, next to `STEPS`; `fileKey` is null for a document the originals would not see. */
const ORIGINAL_ES5 = String.raw`
  function present(doc, step) {
    return Object.prototype.hasOwnProperty.call(doc, step) && !!doc[step];
  }
  function presentPrefix(doc) {
    var n = 0;
    while (n < STEPS.length && present(doc, STEPS[n])) n++;
    return n;
  }
  function fileKey(doc) {
    var digits = typeof doc.file_number === 'number' ? String(doc.file_number) : doc.file_number;
    if (typeof doc.run_name !== 'string' || doc.run_name.length === 0) return null;
    if (typeof digits !== 'string' || !/^[0-9]+$/.test(digits)) return null;
    while (digits.length < 3) digits = '0' + digits;
    return doc.run_name + '_' + digits;
  }
  function contains(status, word) {
    return typeof status === 'string' && status.indexOf(word) >= 0;
  }
`;

/** Map source: `body` sees `doc` (of the pipeline's type, with a run name and a file number), `RF`, `STEPS` and the helpers. */
function procMap(input: DesignInput, body: string): string {
  return [
    'function (doc) {',
    `  var DOC_TYPE = ${JSON.stringify(input.doc_type)};`,
    `  var STEPS = ${JSON.stringify(input.steps.map((s) => s.name))};`,
    ORIGINAL_ES5,
    '  if (doc.type !== DOC_TYPE) return;',
    '  var RF = fileKey(doc);',
    '  if (RF === null) return;',
    body,
    '}',
  ].join('\n');
}

function views(input: DesignInput): Record<string, ViewSource> {
  const map = (body: string): string => procMap(input, body);
  const steps = input.steps.map((s) => s.name);
  const result: Record<string, ViewSource> = {};
  // `proc0`: closed and not yet through the first step; `procK`: good, through every step before K, not K.
  steps.forEach((step, k) => {
    const test =
      k === 0 ? "doc.status === 'closed' && !present(doc, STEPS[0])" : `doc.status === 'good' && !present(doc, STEPS[${k}]) && presentPrefix(doc) >= ${k}`;
    result[step] = { map: map(`  if (${test}) emit(RF, 1);`) };
  });
  for (const step of steps) result[inProgressView(step)] = { map: map(`  if (doc.status === ${JSON.stringify(`${step} in progress`)}) emit(RF, 1);`) };
  result.inqueue = { map: map("  if (contains(doc.status, 'queued')) emit(RF, doc.status);") };
  result.inprogress = { map: map("  if (contains(doc.status, 'in progress')) emit(RF, doc.status);") };
  result.failed = { map: map("  if (contains(doc.status, 'failed')) emit(RF, doc.status);") };
  result.bad = { map: map("  if (contains(doc.status, 'bad')) emit(RF, 1);") };
  result.status = { map: map("  if (typeof doc.status === 'string') emit([doc.status, RF], 1);"), reduce: '_sum' };
  result.statusbyrun = { map: map("  if (typeof doc.status === 'string') emit(RF, doc.status);") };
  result.daqdoc = { map: map('  emit(RF, 1);'), reduce: '_stats' };
  // Good files whose second step (proc1 at Edelweiss) is present.
  result.raw = {
    map: map(
      steps.length > 1
        ? "  if (doc.status === 'good' && present(doc, STEPS[1])) emit(RF, 1);"
        : '  // A pipeline of one step has no second step: raw selects nothing.',
    ),
  };
  // The last step of the present prefix, or `mixed_state` when the first step is absent.
  result.procbyrun = {
    map: map("  var n = presentPrefix(doc);\n  emit([RF, n > 0 ? STEPS[n - 1] : 'mixed_state'], doc.status === undefined ? null : doc.status);"),
  };
  return result;
}

function filters(input: DesignInput): Record<string, string> {
  const first = JSON.stringify(input.steps[0].name);
  return {
    // The originals' `_changes?filter=proc/newproc0`: files to start the chain with.
    newproc0: [
      'function (doc, req) {',
      `  return doc.type === ${JSON.stringify(input.doc_type)} && doc.status === 'closed' && !(Object.prototype.hasOwnProperty.call(doc, ${first}) && doc[${first}]);`,
      '}',
    ].join('\n'),
    // As the originals wrote it: any document whose status is good, whatever its type.
    statusgood: "function (doc, req) {\n  return doc.status === 'good';\n}",
  };
}

/** The original scripts' design document for a pipeline; the same input always gives the same document. */
export function originalDesignDocument(config: OriginalDesignInput): OriginalDesignDocument {
  const stepNames = checkDesignInput(config);
  const name = config.original_design ?? ORIGINAL_DESIGN_DEFAULT;
  const form = originalDesignProblem(name);
  if (form)
    throw new MeshError(
      'CONFIG_INVALID',
      `cannot generate the original scripts' design document: original_design is ${JSON.stringify(name)}, expected ${form}`,
    );
  const input: DesignInput = { doc_type: config.doc_type, steps: config.steps };
  const generatedFrom = createHash('sha256')
    .update(JSON.stringify({ generator: GENERATOR_VERSION, design: name, doc_type: config.doc_type, steps: stepNames }))
    .digest('hex');
  return {
    _id: `_design/${name}`,
    language: 'javascript',
    views: views(input),
    filters: filters(input),
    mesh: { generated_from: `sha256:${generatedFrom}` },
  };
}
