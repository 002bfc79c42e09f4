/**
 * Run-level steps (`"scope": "run"`): once per run, on the run document (core/run-document.ts),
 * after every member file has done the step named by `after`. They are not part of the file
 * pipeline: the loader puts them in `run_steps`, never in `steps`.
 */
import { stepNameClash } from './step-names.js';
import { parseTemplate, unsafePath } from './template.js';
import type { SiteConfig, StepConfig } from './types.js';
import { NAME, type Problems, isObject, stepLimits } from './validate.js';

/** What a run step's templates may name: no file of its own, the run and the list of its members. */
export const RUN_PLACEHOLDERS = Object.freeze(['run_name', 'members_file', 'out', 'step'] as const);
export type RunPlaceholder = (typeof RUN_PLACEHOLDERS)[number];

// C0 and C1 controls and the Unicode line and paragraph separators, as config/template.ts refuses them.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

const RUN_STEP_KEYS = ['name', 'site', 'run', 'out', 'timeout_s', 'max_attempts', 'lease_s', 'executor', 'scope', 'after', 'custody'] as const;

const RUN_OUT_FORM =
  'an absolute output path template naming one file per run with {run_name} (placeholders among {run_name}, {step}), its file name not starting with "-", e.g. "/archive/{run_name}.tar"';

export function isRunScope(value: unknown): boolean {
  return isObject(value) && value.scope === 'run';
}

/** Problems of a run step's `run` argument. */
export function runStepArgumentProblems(template: string): string[] {
  const parsed = parseTemplate(template, RUN_PLACEHOLDERS);
  if (!parsed.ok) return [`${parsed.problem} (a run step has {${RUN_PLACEHOLDERS.join('}, {')}})`];
  return CONTROL.test(template) ? ['a control character'] : [];
}

/** Problems of a run step's `out`: an absolute path, one per run. */
export function runOutProblems(template: string): string[] {
  const parsed = parseTemplate(template, ['run_name', 'step']);
  if (!parsed.ok) return [parsed.problem];
  const used = parsed.parts.flatMap((p) => ('placeholder' in p ? [p.placeholder] : []));
  const problems: string[] = [];
  const sample = parsed.parts.map((p) => ('literal' in p ? p.literal : 'sample')).join('');
  const pathProblem = unsafePath(sample);
  if (pathProblem) problems.push(`the path ${pathProblem}`);
  if (template.slice(template.lastIndexOf('/') + 1).startsWith('-')) problems.push('a file name starting with "-"');
  if (!used.includes('run_name')) problems.push('no {run_name}, so every run would write the same file');
  return problems;
}

/** The `scope` and `after` of a file step: `after` belongs to run steps only. */
export function fileScopeProblems(key: string, value: Record<string, unknown>, problems: Problems): void {
  if (value.scope !== undefined && value.scope !== 'file' && value.scope !== 'run')
    problems.add(`${key}.scope`, value.scope, '"file" (the default: once per file) or "run" (once per run, after every file of the run)');
  if (value.after !== undefined)
    problems.add(`${key}.after`, value.after, 'nothing: after belongs to a run step ("scope": "run"); a file step follows the step before it');
}

/**
 * The run steps of `raw` (entries with `"scope": "run"`), checked; `fileSteps` are the file
 * pipeline already parsed. Keys in messages are the entries' places in `steps[]`.
 */
export function parseRunSteps(raw: unknown, sites: Record<string, SiteConfig>, fileSteps: readonly StepConfig[], problems: Problems): StepConfig[] {
  if (!Array.isArray(raw)) return [];
  const names = raw.flatMap((value) => (isObject(value) && typeof value.name === 'string' ? [value.name] : []));
  const runSteps: StepConfig[] = [];
  if (fileSteps.length === 0 && raw.some(isRunScope))
    problems.add('steps', '(run steps only)', 'at least one file-scope step: a run step runs after a file step of every member');
  raw.forEach((value, index) => {
    if (!isRunScope(value)) return;
    const step = value as Record<string, unknown>;
    const key = `steps[${index}]`;
    problems.unknownKeys(key, step, RUN_STEP_KEYS);
    const { name, site, run, out, after } = step;
    const clash = typeof name === 'string' ? stepNameClash(name, names) : undefined;
    if (typeof name !== 'string' || !NAME.test(name)) problems.add(`${key}.name`, name, 'a step name of lower-case letters, digits, _ and - (e.g. "archive")');
    else if (clash) problems.add(`${key}.name`, name, `a step name that is not ${clash} (e.g. "archive")`);
    else if (names.indexOf(name) !== names.lastIndexOf(name)) problems.add(`${key}.name`, name, 'a name no other step has');
    if (typeof site !== 'string' || !sites[site]) problems.add(`${key}.site`, site, `one of the sites (${Object.keys(sites).join(', ')})`);
    else if (sites[site].may_run.length > 0 && typeof name === 'string' && !sites[site].may_run.includes(name))
      problems.add(`${key}.site`, site, `a site whose may_run lists ${name} (${site} may run: ${sites[site].may_run.join(', ')})`);
    const fileNames = fileSteps.map((s) => s.name);
    if (typeof after !== 'string' || !fileNames.includes(after)) {
      const isRun = typeof after === 'string' && raw.some((other) => isRunScope(other) && (other as { name?: unknown }).name === after);
      problems.add(
        `${key}.after`,
        after,
        isRun
          ? `a file-scope step (one of ${fileNames.join(', ')}): ${after} is a run step, and a run step is not part of the file pipeline`
          : `the file-scope step every file of the run must have done first (one of ${fileNames.join(', ')})`,
      );
    }
    if (step.executor !== undefined && step.executor !== 'command')
      problems.add(`${key}.executor`, step.executor, '"command" (a run step runs its argument vector; the built-in transfer is a file step)');
    if (step.custody !== undefined && typeof step.custody !== 'boolean') problems.add(`${key}.custody`, step.custody, 'true or false');
    if (!Array.isArray(run) || run.length === 0 || !run.every((a) => typeof a === 'string'))
      problems.add(`${key}.run`, run, 'a non-empty argument vector of strings, e.g. ["tar", "--create", "--file", "{out}", "--files-from", "{members_file}"]');
    else
      run.forEach((arg: string, i) => {
        const found = runStepArgumentProblems(arg);
        if (found.length > 0) problems.add(`${key}.run[${i}]`, arg, `an argument template; here: ${found.join('; ')}`);
      });
    if (typeof out !== 'string' || out.length === 0) problems.add(`${key}.out`, out, RUN_OUT_FORM);
    else {
      const found = runOutProblems(out);
      if (found.length > 0) problems.add(`${key}.out`, out, `${RUN_OUT_FORM}; here: ${found.join('; ')}`);
    }
    const limits = stepLimits(problems, key, step);
    runSteps.push({
      name: String(name),
      site: String(site),
      run: Array.isArray(run) ? run.map(String) : [],
      out: String(out),
      ...limits,
      executor: 'command',
      scope: 'run',
      after: String(after),
      ...(step.custody === true ? { custody: true } : {}),
    });
  });
  return runSteps;
}
