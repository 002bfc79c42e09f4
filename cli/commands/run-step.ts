import { Command } from 'commander';
import { hostname } from 'node:os';
import type { AgentContext } from '../../agents/context.js';
import { runStep } from '../../agents/run-step.js';
import { readAssignment, stepsOwnedBy } from '../../store/assignment.js';
import { MeshError } from '../../core/errors.js';
import { type GlobalOptions, defaultAgentName, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

/** Run one step of one document by hand: claiming it first if it is ready, starting it if queued. */
export function runStepCommand(): Command {
  return new Command('run-step')
    .description('run one step of one document now (claims it if ready; starts it if queued for a batch job)')
    .argument('<doc_id>', 'document id')
    .argument('<step>', 'step name, e.g. proc1')
    .requiredOption('--site <site>', 'the site running the step')
    .option('--name <name>', 'agent name recorded in the document')
    .action(
      action(async (docId: string, stepName: string, options: { site: string; name?: string }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        const site = siteOf(config, options.site);
        const step = config.steps.find((s) => s.name === stepName);
        if (!step) throw new MeshError('BAD_INPUT', `step ${JSON.stringify(stepName)} is not in the pipeline (${config.steps.map((s) => s.name).join(', ')})`);
        const name = options.name ?? defaultAgentName(site.name);
        const logger = makeLogger(globals, { site: site.name, agent: name, doc: docId, step: stepName });
        const force = new AbortController();
        const db = openSiteDatabase(config, site, { retry: 'until-aborted', signal: force.signal, logger });
        // The coordinator's assignment decides who owns a step now (the config when there is none).
        const assignment = await readAssignment(db);
        if (!stepsOwnedBy(site.name, assignment, config).some((s) => s.name === stepName)) {
          throw new MeshError('BAD_INPUT', `step ${stepName} is not assigned to site ${site.name} (assigned to ${assignment?.steps?.[stepName] ?? step.site})`);
        }
        const ctx: AgentContext = { config, site, name, host: hostname(), db, logger, steps: [step], now: () => new Date() };
        const stop = new AbortController();
        process.once('SIGTERM', () => stop.abort());
        const outcome = await runStep(ctx, docId, stepName, stop.signal);
        if (outcome.end === 'skipped') throw new MeshError(outcome.code, outcome.reason);
        process.stdout.write(`${docId} ${stepName}: ${outcome.end} (${outcome.doc.status})\n`);
        if (outcome.end !== 'succeeded') process.exitCode = 1;
      }),
    );
}
