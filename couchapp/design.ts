/**
 * The `_design/mesh` document, generated from the pipeline config: the views agents and the
 * status page query, and a validate_doc_update that enforces core/invariants.ts on the server.
 * The original scripts' views and filters are in their own design document (original-design.ts):
 * nothing here takes one of their names. Every
 * function is ES5 source text (see es5.ts); the config is embedded in it as JSON literals.
 */
import { createHash } from 'node:crypto';
import type { MeshConfig } from '../config/types.js';
import { FIXED_VIEWS, stepNameClash } from '../config/step-names.js';
import { MeshError } from '../core/errors.js';
import { statusClosure, statusSuccessors } from '../core/invariants.js';
import { CATALOGUE_FIELDS } from '../core/provenance.js';
import { AGENT_ROLE_PREFIX, COORDINATOR_ROLE, OPERATOR_ROLE } from '../core/roles.js';
import { HEARTBEAT_TYPE, type WritePolicy } from '../core/write-rules.js';
import { COMMON_ES5, INVARIANTS_ES5, READY_ES5 } from './es5.js';
import { PROVENANCE_ES5, WRITE_RULES_ES5 } from './es5-rules.js';

/** Bump when the generated functions change meaning, so `mesh.generated_from` changes too. */
export const GENERATOR_VERSION = 4;

/** The `type` of the agents' heartbeat documents. */
export const AGENT_DOC_TYPE = HEARTBEAT_TYPE;

export interface ViewSource {
  map: string;
  reduce?: '_count' | '_sum' | '_stats';
}

export interface DesignDocument {
  _id: '_design/mesh';
  _rev?: string;
  language: 'javascript';
  views: Record<string, ViewSource>;
  validate_doc_update: string;
  mesh: { generated_from: string };
}

/** The pipeline, and (for the write rules) the sites and the ingest; without sites a step runs only on its own `site`. */
export type DesignInput = Pick<MeshConfig, 'doc_type' | 'steps'> & Partial<Pick<MeshConfig, 'sites' | 'ingest'>>;

/** Views whose names are fixed, here and in `_design/proc` (which adds views per step); a step may not be named like one of them. The config loader refuses such names too. */
export { FIXED_VIEWS };

/** Map source for the pipeline's documents: `body` sees `doc`, the helpers, `STEPS` and `DOC_TYPE`. */
function docMap(input: DesignInput, body: string): string {
  return [
    'function (doc) {',
    `  var DOC_TYPE = ${JSON.stringify(input.doc_type)};`,
    `  var STEPS = ${JSON.stringify(input.steps.map((s) => s.name))};`,
    COMMON_ES5 + READY_ES5,
    '  if (doc.type !== DOC_TYPE) return;',
    body,
    '}',
  ].join('\n');
}

function views(input: DesignInput): Record<string, ViewSource> {
  const map = (body: string): string => docMap(input, body);
  return {
    by_status: { map: map('  emit(doc.status, null);'), reduce: '_count' },
    ready: {
      map: map('  var step = readyStep(doc);\n  if (step !== null) emit([step, record(doc, step).retry_after || ""], null);'),
      reduce: '_count',
    },
    in_flight: {
      map: map(
        [
          '  var parsed = parseStatus(doc.status);',
          "  if (!parsed || (parsed.kind !== 'queued' && parsed.kind !== 'in_progress')) return;",
          '  var r = record(doc, parsed.step);',
          '  emit([parsed.step, value(r.lease_until)], { agent: value(r.agent), site: value(r.site), attempts: value(r.attempts), started: value(r.started) });',
        ].join('\n'),
      ),
      reduce: '_count',
    },
    // Not `failed`: that name is the original scripts' view, of another shape (original-design.ts).
    failed_steps: {
      map: map(
        [
          '  var parsed = parseStatus(doc.status);',
          "  if (!parsed || parsed.kind !== 'failed') return;",
          '  var r = record(doc, parsed.step);',
          '  emit(parsed.step, { reason: value(r.reason), exit_code: value(r.exit_code), stderr_tail: value(r.stderr_tail), run_name: value(doc.run_name), file_number: value(doc.file_number) });',
        ].join('\n'),
      ),
      reduce: '_count',
    },
    done: {
      map: map('  for (var i = 0; i < STEPS.length; i++) {\n    if (isDone(doc, STEPS[i])) emit(STEPS[i], null);\n  }'),
      reduce: '_count',
    },
    // Batch jobs the sweeper found lost (agents/batch/lost-jobs.ts) and not claimed again since.
    lost_jobs: {
      map: map(
        [
          '  for (var i = 0; i < STEPS.length; i++) {',
          '    var r = record(doc, STEPS[i]);',
          "    if (r.ok === false && r.batch && typeof r.reason === 'string' && /^(batch job |no batch job id)/.test(r.reason)) {",
          '      emit([STEPS[i], value(r.started)], { reason: r.reason, system: value(r.batch.system), job: value(r.batch.id), status: doc.status });',
          '    }',
          '  }',
        ].join('\n'),
      ),
      reduce: '_count',
    },
    conflicts: { map: map('  if (doc._conflicts) emit(doc._id, doc._conflicts);'), reduce: '_count' },
    // Documents whose double claim the audit resolved (the losing runs are in duplicates[]): replicated, so any server counts them all.
    duplicates: { map: map('  if (Array.isArray(doc.duplicates) && doc.duplicates.length > 0) emit(doc._id, doc.duplicates.length);'), reduce: '_count' },
    // Flow (coordinator/flow.ts): one row per done step with a finish time (the original scripts'
    // records: their `date`), keyed by its hour so that `group_level: 2` counts files done per
    // step and hour; the value carries what the latencies need: [previous step's finish (or
    // date_closed), date_closed, run_name, file_number, duration_s]. Dates in ISO 8601 whatever
    // form the document holds them in (core/dates.ts).
    flow: {
      map: map(
        [
          '  var closed = isoDate(doc.date_closed);',
          '  for (var i = 0; i < STEPS.length; i++) {',
          '    var finished = isDone(doc, STEPS[i]) ? finishedOf(record(doc, STEPS[i])) : null;',
          '    if (finished === null) continue;',
          '    var from = i === 0 ? closed : finishedOf(record(doc, STEPS[i - 1]));',
          '    emit([STEPS[i], finished.slice(0, 13), finished], [from, closed, value(doc.run_name), value(doc.file_number), value(record(doc, STEPS[i]).duration_s)]);',
          '  }',
        ].join('\n'),
      ),
      reduce: '_count',
    },
    // Files not yet done for a step, oldest DAQ close first (in ISO 8601): the late ones are a key range.
    pending: {
      map: map(
        [
          '  var closed = isoDate(doc.date_closed);',
          "  if (doc.status === 'bad' || closed === null) return;",
          '  for (var i = 0; i < STEPS.length; i++) {',
          '    if (!isDone(doc, STEPS[i])) emit([STEPS[i], closed], [value(doc.run_name), value(doc.file_number)]);',
          '  }',
        ].join('\n'),
      ),
      reduce: '_count',
    },
    by_run: { map: map('  emit([value(doc.run_name), value(doc.file_number)], doc.status);') },
    // The status page: per DAQ host and run, the highest file number comes from the `_stats` reduce.
    by_host_run: {
      map: map("  if (typeof doc.file_number === 'number') emit([doc.daq_host || 'unknown', value(doc.run_name)], doc.file_number);"),
      reduce: '_stats',
    },
    // The status page's search by file name: a prefix range over the file's base name.
    by_file_name: { map: map("  if (typeof doc.file === 'string') emit(doc.file.slice(doc.file.lastIndexOf('/') + 1), null);") },
    agents: {
      map: [
        'function (doc) {',
        `  if (doc.type === ${JSON.stringify(AGENT_DOC_TYPE)}) emit([doc.site === undefined ? null : doc.site, doc.agent === undefined ? null : doc.agent], doc.last_seen === undefined ? null : doc.last_seen);`,
        '}',
      ].join('\n'),
    },
  };
}

/** What the write rules need of the config: which sites may run each step, which catalogue files. */
export function writePolicy(input: DesignInput): WritePolicy {
  const stepSites: Record<string, string[]> = {};
  for (const step of input.steps) {
    // As the assignment reads the config: an empty may_run lets a site run any step.
    const sites = input.sites ? Object.values(input.sites).filter((site) => site.may_run.length === 0 || site.may_run.includes(step.name)).map((site) => site.name) : [];
    stepSites[step.name] = sites.length > 0 ? sites : [step.site];
  }
  return { docType: input.doc_type, steps: input.steps.map((s) => s.name), stepSites, ingestSites: input.ingest ? [input.ingest.site] : [] };
}

function validateDocUpdate(input: DesignInput): string {
  const policy = writePolicy(input);
  return [
    'function (newDoc, oldDoc, userCtx, secObj) {',
    `  var DOC_TYPE = ${JSON.stringify(policy.docType)};`,
    `  var STEPS = ${JSON.stringify(policy.steps)};`,
    `  var CLOSURE = ${JSON.stringify(statusClosure(policy.steps))};`,
    `  var NEXT = ${JSON.stringify(statusSuccessors(policy.steps))};`,
    `  var STEP_SITES = ${JSON.stringify(policy.stepSites)};`,
    `  var INGEST_SITES = ${JSON.stringify(policy.ingestSites)};`,
    `  var CATALOGUE = ${JSON.stringify(CATALOGUE_FIELDS)};`,
    `  var AGENT_PREFIX = ${JSON.stringify(AGENT_ROLE_PREFIX)};`,
    `  var COORDINATOR_ROLE = ${JSON.stringify(COORDINATOR_ROLE)};`,
    `  var OPERATOR_ROLE = ${JSON.stringify(OPERATOR_ROLE)};`,
    `  var HEARTBEAT_TYPE = ${JSON.stringify(HEARTBEAT_TYPE)};`,
    COMMON_ES5 + INVARIANTS_ES5 + PROVENANCE_ES5 + WRITE_RULES_ES5,
    '  var problems = writeProblems(newDoc, oldDoc, userCtx);',
    "  if (problems.length > 0) throw({ forbidden: problems.join('; ') });",
    '}',
  ].join('\n');
}

/** The step names; throws CONFIG_INVALID when the steps cannot be turned into the design documents. */
export function checkDesignInput(input: DesignInput): string[] {
  const names = input.steps.map((s) => s.name);
  const problems: string[] = [];
  if (typeof input.doc_type !== 'string' || input.doc_type.length === 0) problems.push('doc_type is empty');
  if (names.length === 0) problems.push('the pipeline has no steps');
  for (const name of names) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)) problems.push(`step name ${JSON.stringify(name)} must start with a letter or digit and contain only letters, digits, _ and -`);
    const clash = stepNameClash(name, names);
    if (clash) problems.push(`step name ${JSON.stringify(name)} clashes with ${clash}`);
  }
  if (new Set(names).size !== names.length) problems.push('step names are not unique');
  if (problems.length > 0) throw new MeshError('CONFIG_INVALID', `cannot generate the design documents: ${problems.join('; ')}; rename the steps in the pipeline config`);
  return names;
}

/** The `_design/mesh` document for a pipeline; the same input always gives the same document. */
export function designDocument(config: DesignInput): DesignDocument {
  const stepNames = checkDesignInput(config);
  const input: DesignInput = { doc_type: config.doc_type, steps: config.steps, sites: config.sites, ingest: config.ingest };
  const generatedFrom = createHash('sha256')
    .update(JSON.stringify({ generator: GENERATOR_VERSION, doc_type: config.doc_type, steps: stepNames, policy: writePolicy(input) }))
    .digest('hex');
  return {
    _id: '_design/mesh',
    language: 'javascript',
    views: views(input),
    validate_doc_update: validateDocUpdate(input),
    mesh: { generated_from: `sha256:${generatedFrom}` },
  };
}
