import { Command } from 'commander';
import { hostname } from 'node:os';
import { readJobFile } from '../../agents/batch/job-file.js';
import type { AgentContext } from '../../agents/context.js';
import { runStep } from '../../agents/run-step.js';
import { actor } from '../../agents/context.js';
import { compareAndSet } from '../../agents/writes.js';
import { type DaqDocument, stepRecord } from '../../core/document.js';
import { credentialsFor, passwordFileEnv } from '../../config/credentials.js';
import { Database } from '../../store/database.js';
import { MeshError, errorMessage } from '../../core/errors.js';
import { type GlobalOptions, defaultAgentName, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';

/**
 * What a batch job runs: every document of its job file in turn, each started only while it is
 * still queued for this job. SIGTERM (scancel, qdel) is not trapped: the job dies, and the next
 * `mesh agent --once` finds its documents lost and makes them ready again.
 */
export function runBatchCommand(): Command {
  return new Command('run-batch')
    .description('run the documents of a batch job file (what a job submitted by `mesh agent --once` runs)')
    .argument('<job_file>', 'the job file written by the submitter')
    .requiredOption('--site <site>', 'the site running the job')
    .option('--name <name>', 'agent name recorded in the documents (default: site-host-pid)')
    .action(
      action(async (jobFile: string, options: { site: string; name?: string }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const config = loadConfig(globals);
        const site = siteOf(config, options.site);
        const job = await readJobFile(jobFile);
        if (job.site !== site.name) throw new MeshError('BAD_INPUT', `job file ${jobFile} is for site ${job.site}, not ${site.name}`);
        const step = config.steps.find((s) => s.name === job.step);
        if (!step || step.site !== site.name)
          throw new MeshError('BAD_INPUT', `job file ${jobFile} names step ${JSON.stringify(job.step)}, which site ${site.name} does not own`);
        const name = options.name ?? defaultAgentName(site.name);
        const logger = makeLogger(globals, { site: site.name, agent: name, step: step.name });
        const force = new AbortController();
        const dbOptions = {
          retry: 'until-aborted' as const,
          signal: force.signal,
          logger,
          timeoutMs: config.server_timeout_s * 1000,
          maxAnswerBytes: config.server_max_answer_mib * 1024 * 1024,
        };
        const db = job.credentials
          ? new Database({
              url: site.server,
              database: config.database,
              credentials: credentialsFor(site.credentials_of, passwordFileEnv(site.credentials_of, job.credentials)),
              ...dbOptions,
            })
          : openSiteDatabase(config, site, dbOptions);
        const ctx: AgentContext = { config, site, name, host: hostname(), db, logger, steps: [step], now: () => new Date() };
        const never = new AbortController().signal;
        // The walltime counts from the job's start, which this process follows closely.
        const deadline = job.walltime_s === undefined ? Infinity : performance.timeOrigin + job.walltime_s * 1000;
        let unfinished = 0;
        for (const [index, docId] of job.docs.entries()) {
          const leftS = (deadline - Date.now()) / 1000;
          // The first document always starts: a job that gave everything back would be submitted again and again.
          if (index > 0 && leftS < step.timeout_s) {
            const rest = job.docs.slice(index);
            logger.warn(
              { left_s: Math.round(leftS), timeout_s: step.timeout_s },
              `${rest.length} document(s) not started: ${Math.max(0, Math.round(leftS))} s of walltime left, ${step.name} may take ${step.timeout_s} s`,
            );
            await giveBackUnstarted(
              ctx,
              rest,
              step.name,
              job.stdout,
              `the job stopped before its walltime (${Math.max(0, Math.round(leftS))} s left, ${step.name} may take ${step.timeout_s} s)`,
            );
            break;
          }
          try {
            const outcome = await runStep(ctx, docId, step.name, never, { job: job.stdout });
            if (outcome.end === 'skipped') logger.warn({ doc: docId }, `skipped: ${outcome.reason}`);
            else if (outcome.end === 'released' || outcome.end === 'lease-lost') unfinished++;
            process.stdout.write(`${docId} ${step.name}: ${outcome.end}${outcome.end === 'skipped' ? '' : ` (${outcome.doc.status})`}\n`);
          } catch (error) {
            unfinished++;
            logger.error({ doc: docId }, `cannot run: ${errorMessage(error)}`);
          }
        }
        // A recorded failure is the document's business; the job fails only when it left something unrecorded.
        if (unfinished > 0) process.exitCode = 1;
      }),
    );
}

/**
 * Makes the documents this job will not start ready again at once (a `lost` of a queued claim is
 * not charged, core/state.ts), instead of leaving them for the next pass's sweep to find.
 */
async function giveBackUnstarted(ctx: AgentContext, docIds: string[], stepName: string, jobStdout: string, reason: string): Promise<void> {
  for (const docId of docIds) {
    const doc = await ctx.db.get<DaqDocument>(docId);
    const record = doc && stepRecord(doc, stepName);
    if (!doc || doc.status !== `${stepName} queued` || record?.batch?.stdout !== jobStdout) continue;
    const result = await compareAndSet(ctx, doc, { type: 'lost', step: stepName, by: actor(ctx), reason });
    process.stdout.write(`${docId} ${stepName}: not started${result.kind === 'written' ? ` (${result.doc.status})` : ''}\n`);
  }
}
