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
import { HEARTBEAT_TYPE, TRIGGER_TYPE, type WritePolicy } from '../core/write-rules.js';
import { COMMON_ES5, INVARIANTS_ES5 } from './es5.js';
import { MESH_VIEW_CONTRACTS } from './mesh-views.js';
import { CUSTODY_RULES_ES5, PROVENANCE_ES5, RUN_RULES_ES5, SUPERSEDE_ES5, WRITE_RULES_ES5 } from './es5-rules.js';
import { RUN_DOC_TYPE, RUN_ID_PREFIX } from '../core/run-document.js';
import { RUN_CATALOGUE_FIELDS } from '../core/run-rules.js';
import { CONTROL_ACTIONS, CONTROLS_ID, CONTROLS_TYPE } from '../core/operator-controls.js';
import { CONTROLS_ES5 } from './es5-controls.js';

/** Bump when the generated functions change meaning, so `mesh.generated_from` changes too. */
export const GENERATOR_VERSION = 6;

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
export type DesignInput = Pick<MeshConfig, 'doc_type' | 'steps'> & Partial<Pick<MeshConfig, 'sites' | 'ingest' | 'run_steps'>>;

/** Views whose names are fixed, here and in `_design/proc` (which adds views per step); a step may not be named like one of them. The config loader refuses such names too. */
export { FIXED_VIEWS };

function views(input: DesignInput): Record<string, ViewSource> {
  return Object.fromEntries(MESH_VIEW_CONTRACTS.map((view) => [view.name, { map: view.map(input), ...(view.reduce ? { reduce: view.reduce } : {}) }]));
}

/** What the write rules need of the config: which sites may run each step, which catalogue files. */
export function writePolicy(input: DesignInput): WritePolicy {
  const stepSites: Record<string, string[]> = {};
  const runSteps = input.run_steps ?? [];
  for (const step of [...input.steps, ...runSteps]) {
    // As the assignment reads the config: an empty may_run lets a site run any step.
    const sites = input.sites
      ? Object.values(input.sites)
          .filter((site) => site.may_run.length === 0 || site.may_run.includes(step.name))
          .map((site) => site.name)
      : [];
    stepSites[step.name] = sites.length > 0 ? sites : [step.site];
  }
  return {
    docType: input.doc_type,
    steps: input.steps.map((s) => s.name),
    stepSites,
    ingestSites: input.ingest ? [input.ingest.site] : [],
    ...(runSteps.length > 0 ? { runSteps: runSteps.map((s) => s.name) } : {}),
  };
}

/**
 * The write rules over the run pipeline: the same fragments compiled again in a scope where the
 * pipeline constants are the run steps' (core/write-rules.ts calls itself with the run policy).
 */
function runRulesBlock(policy: WritePolicy): string {
  const runSteps = policy.runSteps ?? [];
  const head = [
    `  var RUN_DOC_TYPE = ${JSON.stringify(RUN_DOC_TYPE)};`,
    `  var RUN_ID_PREFIX = ${JSON.stringify(RUN_ID_PREFIX)};`,
    `  var RUN_STEPS = ${JSON.stringify(runSteps)};`,
    `  var RUN_CATALOGUE = ${JSON.stringify(RUN_CATALOGUE_FIELDS)};`,
  ];
  if (runSteps.length === 0) return [...head, '  var RUN_WRITE_PROBLEMS = null;'].join('\n');
  return [
    ...head,
    // Built only when a run document is written: a file document's write does not pay for it.
    '  function RUN_WRITE_PROBLEMS(newDoc, oldDoc, user) {',
    '    var DOC_TYPE = RUN_DOC_TYPE;',
    '    var STEPS = RUN_STEPS;',
    `    var CLOSURE = ${JSON.stringify(statusClosure(runSteps))};`,
    `    var NEXT = ${JSON.stringify(statusSuccessors(runSteps))};`,
    // The superseding rules name STEPS too: compiled again here, they judge the run steps' records.
    COMMON_ES5 + INVARIANTS_ES5 + PROVENANCE_ES5 + SUPERSEDE_ES5 + WRITE_RULES_ES5,
    '    return writeProblems(newDoc, oldDoc, user);',
    '  }',
    RUN_RULES_ES5,
  ].join('\n');
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
    `  var TRIGGER_TYPE = ${JSON.stringify(TRIGGER_TYPE)};`,
    `  var CONTROLS_ID = ${JSON.stringify(CONTROLS_ID)};`,
    `  var CONTROLS_TYPE = ${JSON.stringify(CONTROLS_TYPE)};`,
    `  var CONTROL_ACTIONS = ${JSON.stringify(CONTROL_ACTIONS)};`,
    COMMON_ES5 + INVARIANTS_ES5 + PROVENANCE_ES5 + SUPERSEDE_ES5 + WRITE_RULES_ES5 + CUSTODY_RULES_ES5 + CONTROLS_ES5,
    runRulesBlock(policy),
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
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name))
      problems.push(`step name ${JSON.stringify(name)} must start with a letter or digit and contain only letters, digits, _ and -`);
    const clash = stepNameClash(name, names);
    if (clash) problems.push(`step name ${JSON.stringify(name)} clashes with ${clash}`);
  }
  if (new Set(names).size !== names.length) problems.push('step names are not unique');
  if (problems.length > 0)
    throw new MeshError('CONFIG_INVALID', `cannot generate the design documents: ${problems.join('; ')}; rename the steps in the pipeline config`);
  return names;
}

/** The custody steps change the custody views: part of what the design is generated from (absent when none, as before custody). */
function custodyHash(config: DesignInput): { custody?: string[] } {
  const custody = config.steps.filter((s) => s.custody === true).map((s) => (s.to ? `${s.name}>${s.to}` : s.name));
  return custody.length > 0 ? { custody } : {};
}

/** The `_design/mesh` document for a pipeline; the same input always gives the same document. */
export function designDocument(config: DesignInput): DesignDocument {
  const stepNames = checkDesignInput(config);
  const input: DesignInput = { doc_type: config.doc_type, steps: config.steps, sites: config.sites, ingest: config.ingest, run_steps: config.run_steps };
  const generatedFrom = createHash('sha256')
    .update(JSON.stringify({ generator: GENERATOR_VERSION, doc_type: config.doc_type, steps: stepNames, policy: writePolicy(input), ...custodyHash(config) }))
    .digest('hex');
  return {
    _id: '_design/mesh',
    language: 'javascript',
    views: views(input),
    validate_doc_update: validateDocUpdate(input),
    mesh: { generated_from: `sha256:${generatedFrom}` },
  };
}
