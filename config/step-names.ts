/**
 * Names a step may not take. A step gets a view of its own name in `_design/mesh` and a record
 * of its own name in every document, so a step named like a fixed view or a document field
 * would replace it: checked when the config is loaded, before anything starts.
 */

/** Views of `_design/mesh` whose names are fixed (couchapp/design.ts adds one view per step). */
export const FIXED_VIEWS: readonly string[] = Object.freeze(['by_status', 'ready', 'in_flight', 'failed', 'done', 'conflicts', 'duplicates', 'by_run', 'by_host_run', 'by_file_name', 'lost_jobs', 'agents', 'status', 'inqueue', 'inprogress', 'flow', 'pending']);

/** Fields of a data document (core/document.ts) and the status words of the state machine. */
const DOCUMENT_FIELDS: readonly string[] = Object.freeze(['type', 'run_name', 'file_number', 'file', 'size_in_bytes', 'checksum', 'date_closed', 'status', 'history', 'duplicates', 'closed', 'good', 'bad']);

/** What a step name would clash with, in words, or undefined when the name is free. */
export function stepNameClash(name: string): string | undefined {
  if (FIXED_VIEWS.includes(name)) return `the name of a fixed view (${FIXED_VIEWS.join(', ')})`;
  if (DOCUMENT_FIELDS.includes(name)) return `a document field or status word (${DOCUMENT_FIELDS.join(', ')})`;
  return undefined;
}
