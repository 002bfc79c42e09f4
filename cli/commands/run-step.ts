import { Command } from 'commander';
import { hostname } from 'node:os';
import type { AgentContext } from '../../agents/context.js';
import { runClaimedStep } from '../../agents/step-job.js';
import { apply, claim } from '../../agents/writes.js';
import { type DaqDocument, parseStatus } from '../../core/document.js';
import { MeshError } from '../../core/errors.js';
import { readyFor } from '../../core/state.js';
import { type GlobalOptions, defaultAgentName, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

/** What a batch job calls: run one step of one document, claiming it first if needed. */
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
        if (step.site !== site.name) throw new MeshError('BAD_INPUT', `step ${stepName} is owned by site ${step.site}, not ${site.name}`);
        const name = options.name ?? defaultAgentName(site.name);
        const logger = makeLogger(globals, { site: site.name, agent: name, doc: docId, step: stepName });
        const force = new AbortController();
        const ctx: AgentContext = { config, site, name, host: hostname(), db: openSiteDatabase(config, site, { retry: 'until-aborted', signal: force.signal, logger }), logger, steps: [step], now: () => new Date() };
        const doc = await ctx.db.get<DaqDocument>(docId);
        if (!doc) throw new MeshError('BAD_INPUT', `document ${docId} does not exist in ${config.database}`);
        const leaseUntil = new Date(Date.now() + step.lease_s * 1000).toISOString();
        const status = parseStatus(doc.status, config.steps.map((s) => s.name));
        let claimed: DaqDocument | undefined;
        if (status?.kind === 'queued' && status.step === stepName) {
          claimed = await apply(ctx, doc, { type: 'start', step: stepName, site: site.name, agent: name, host: ctx.host, lease_until: leaseUntil });
        } else if (readyFor(doc, config, new Date()) === stepName) {
          claimed = await claim(ctx, doc, { type: 'claim', step: stepName, mode: 'run', site: site.name, agent: name, host: ctx.host, lease_until: leaseUntil });
          if (!claimed) throw new MeshError('CONFLICT', `${docId}: another agent claimed ${stepName} first`);
        } else {
          throw new MeshError('BAD_INPUT', `${docId} is "${doc.status}": ${stepName} is neither ready nor queued`);
        }
        const stop = new AbortController();
        process.once('SIGTERM', () => stop.abort());
        const { end, doc: after } = await runClaimedStep(ctx, claimed, stepName, stop.signal);
        process.stdout.write(`${docId} ${stepName}: ${end} (${after.status})\n`);
        if (end !== 'succeeded') process.exitCode = 1;
      }),
    );
}
