/**
 * Names a step may not take. A step gets views of its own name in `_design/proc` (`<step>` and
 * `<step>inprogress`, couchapp/original-design.ts) and a record of its own name in every
 * document, so a step named like a fixed view, another step's view or a document field would
 * replace it: checked when the config is loaded, before anything starts.
 */
import { MESH_FIELDS } from '../core/document.js';
import { CATALOGUE_FIELDS } from '../core/provenance.js';
import { RUN_CATALOGUE_FIELDS } from '../core/run-rules.js';

/** Views of `_design/mesh` (couchapp/design.ts); reserved for steps too, so that a name means one thing in both designs. */
export const MESH_VIEW_NAMES: readonly string[] = [
  'by_status',
  'ready',
  'in_flight',
  'failed_steps',
  'done',
  'conflicts',
  'duplicates',
  'by_run',
  'by_host_run',
  'by_file_name',
  'lost_jobs',
  'agents',
  'flow',
  'pending',
  'custody_due',
  'custody_copies',
  'run_docs',
  'by_version',
];

/** Views of `_design/proc` whose names are fixed (the original scripts' names). */
export const ORIGINAL_VIEWS: readonly string[] = Object.freeze([
  'inqueue',
  'inprogress',
  'failed',
  'bad',
  'status',
  'statusbyrun',
  'daqdoc',
  'raw',
  'procbyrun',
]);

/** Every view name a step may not take. */
export const FIXED_VIEWS: readonly string[] = Object.freeze([...MESH_VIEW_NAMES, ...ORIGINAL_VIEWS]);

/** The `_design/proc` view of the documents in progress for `step`. */
export function inProgressView(step: string): string {
  return `${step}inprogress`;
}

/** Fields of a data document (core/document.ts) and the status words of the state machine. */
const DOCUMENT_FIELDS: readonly string[] = Object.freeze([...MESH_FIELDS, ...CATALOGUE_FIELDS, ...RUN_CATALOGUE_FIELDS, 'custody', 'closed', 'good', 'bad']);

/** What a step name would clash with, in words, or undefined when the name is free; `steps` are the pipeline's step names. */
export function stepNameClash(name: string, steps: readonly string[] = []): string | undefined {
  if (FIXED_VIEWS.includes(name)) return `the name of a fixed view (${FIXED_VIEWS.join(', ')})`;
  if (DOCUMENT_FIELDS.includes(name)) return `a document field or status word (${DOCUMENT_FIELDS.join(', ')})`;
  const owner = steps.find((step) => step !== name && inProgressView(step) === name);
  if (owner !== undefined) return `the name of step ${JSON.stringify(owner)}'s view ${name} in _design/proc`;
  return undefined;
}
