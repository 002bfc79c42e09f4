import { mkdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { linkSignals } from '../core/abort.js';
import { backoffDelay } from '../core/backoff.js';
import { sha256File } from '../core/checksum.js';
import { type DaqDocument, stepRecord } from '../core/document.js';
import { MeshError, errorMessage } from '../core/errors.js';
import type { StepResult } from '../core/state.js';
import { type AgentContext, actor } from './context.js';
import { buildArgv, templateVars } from './command.js';
import { checkProgram, isConfigurationFault, outputFolderFault } from './config-fault.js';
import { LeaseKeeper } from './lease.js';
import { ensureEarlierLocalRunsGone, identifyRun, localRunPath, removeLocalRun, writeLocalRun } from './run-identity.js';
import { runCommand, tail } from './runner.js';
import { apply } from './writes.js';

export type JobEnd = 'succeeded' | 'failed' | 'released' | 'lease-lost';

/** A file name safe for logs: document ids may hold anything. */
function logName(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 150);
}

/** The folder of a document's run logs and host-local run records (run-identity.ts) under the site's `log_dir`. */
export function runFolder(logDir: string, docId: string): string {
  return join(logDir, logName(docId));
}

/**
 * Runs one step the agent has claimed, keeping the lease alive, and records the outcome:
 * success → ok record and `good`; failure → a retry later or `<step> failed`; a failure the
 * configuration caused (config-fault.ts) → `<step> failed` at once, for `mesh retry` after the fix.
 * `stop` aborting (forced shutdown) kills the process and gives the claim back.
 */
export async function runClaimedStep(
  ctx: AgentContext,
  claimed: DaqDocument,
  stepName: string,
  stop: AbortSignal,
  processEnded?: () => void,
): Promise<{ end: JobEnd; doc: DaqDocument }> {
  const index = ctx.config.steps.findIndex((s) => s.name === stepName);
  const step = ctx.config.steps[index];
  const log = ctx.logger.child({ doc: claimed._id, step: stepName });
  const lease = new LeaseKeeper(ctx, claimed, stepName, step.lease_s);
  const attempt = stepRecord(claimed, stepName)?.attempts ?? 1;
  const logBase = join(runFolder(ctx.site.log_dir, claimed._id), `${stepName}.${attempt}`);
  const stdoutPath = `${logBase}.out`;
  const stderrPath = `${logBase}.err`;
  const runRecord = localRunPath(logBase);
  /** The spawn's identity being recorded: awaited before the record is removed. */
  let identified: Promise<void> | undefined;

  let result: StepResult | undefined;
  let reason: string | undefined;
  // By hand (core/abort.ts): a signal from AbortSignal.any can be collected while the step runs.
  const linked = linkSignals([stop, lease.signal]);
  let final = false;
  try {
    const vars = templateVars(claimed, step, ctx.config.steps[index - 1]);
    await mkdir(dirname(logBase), { recursive: true });
    // What an earlier claim's run left on this host (its agent and supervisor killed before a
    // renewal put its identity in the document) must be gone before this attempt starts.
    const earlier = await ensureEarlierLocalRunsGone(dirname(logBase), claimed._id, stepName, attempt);
    if (!earlier.gone)
      throw new MeshError('PROCESS_FAILED', `the earlier run recorded on this host still runs, not starting attempt ${attempt}: ${earlier.reason}`);
    if (earlier.killed > 0)
      log.warn(
        `killed ${earlier.killed} process(es) of the earlier run (attempt ${earlier.attempts.join(', ')}, recorded on this host) before starting attempt ${attempt}`,
      );
    const signal = linked.signal;
    // The built-in transfer writes {out} on the destination site, not here.
    // Imported here: ssh2 weighs on the start of every batch job, and only the transfer step needs it.
    const sent =
      step.executor === 'sftp'
        ? await (await import('./executors/sftp-step.js')).runSftpStep(ctx, claimed, step, vars, { signal, stdoutPath, stderrPath, logger: log })
        : undefined;
    if (!sent) await mkdir(dirname(vars.out), { recursive: true }).catch((cause: unknown) => Promise.reject(outputFolderFault(dirname(vars.out), cause)));
    const argv = sent ? [] : buildArgv(step, vars);
    if (!sent) await checkProgram(argv[0], process.env);
    if (!sent) log.debug({ argv }, 'running');
    // The claim was written before the process existed: its identity is recorded on this host
    // at once, and in the document by the first renewal (none for a step shorter than a third of
    // its lease). Only when the host-local record cannot be written does it cost a write now.
    const onSpawn = (pid: number) => {
      identified = identifyRun(pid, pid)
        .then(async (run) => {
          if (!run) return;
          lease.carryRun(run);
          await writeLocalRun(runRecord, { doc: claimed._id, step: stepName, attempt, run }).catch(async (error: unknown) => {
            log.warn(`run identity not recorded on this host (${errorMessage(error)}): recording it in the document now`);
            await lease.recordRun(run);
          });
        })
        .catch((error) => log.warn(`run identity not recorded: ${errorMessage(error)}`));
    };
    const outcome = sent?.outcome ?? (await runCommand(argv, { timeoutMs: step.timeout_s * 1000, signal, stdoutPath, stderrPath, onSpawn }));
    result = {
      exit_code: outcome.exit_code,
      signal: outcome.signal,
      duration_s: round(outcome.duration_s),
      stdout: stdoutPath,
      stderr: stderrPath,
      processname: sent ? 'sftp' : basename(argv[0]),
    };
    if (lease.signal.aborted) {
      await lease.stop();
      return { end: 'lease-lost', doc: lease.doc };
    }
    if (outcome.aborted) {
      const doc = await apply(ctx, await lease.stop(), { type: 'release', step: stepName, agent: ctx.name });
      log.info('released on shutdown');
      return { end: 'released', doc };
    }
    if (outcome.spawn_error) reason = `cannot start ${argv[0]}: ${outcome.spawn_error}`;
    else if (outcome.timed_out) reason = `timed out after ${step.timeout_s} s`;
    else if (sent) {
      if (sent.failure !== undefined) reason = sent.failure;
      else Object.assign(result, sent.fields);
    } else if (outcome.exit_code !== 0) reason = `exited with ${outcome.exit_code ?? `signal ${outcome.signal}`}`;
    else {
      const produced = await stat(vars.out).then(
        (s) => (s.isFile() ? s.size : undefined),
        () => undefined,
      );
      if (produced !== undefined) Object.assign(result, { file: vars.out, file_size: produced, checksum: { sha256: await sha256File(vars.out) } });
    }
  } catch (error) {
    reason = errorMessage(error);
    final = isConfigurationFault(error);
  } finally {
    linked.release();
    // The run is over (runCommand killed what its group left): its record protects nothing any more.
    if (identified) {
      await identified;
      await removeLocalRun(runRecord).catch((error) => log.warn(`run record ${runRecord} not removed: ${errorMessage(error)}`));
    }
  }

  // The process and its group are gone: the slot may take the next claim while this outcome is written.
  processEnded?.();
  const latest = await lease.stop();
  if (lease.signal.aborted) return { end: 'lease-lost', doc: latest };
  if (reason === undefined && result) {
    const doc = await apply(ctx, latest, { type: 'succeed', step: stepName, agent: ctx.name, result });
    log.info({ duration_s: result.duration_s }, 'step done');
    return { end: 'succeeded', doc };
  }
  const delayMs = backoffDelay(attempt, { baseMs: ctx.config.agent.retry_base_s * 1000, capMs: ctx.config.agent.retry_cap_s * 1000, jitter: 0.5 });
  const retryAfter = new Date(ctx.now().getTime() + delayMs).toISOString();
  const stderrTail = await tail(stderrPath);
  const doc = await apply(ctx, latest, {
    type: 'fail',
    step: stepName,
    agent: ctx.name,
    reason: reason ?? 'unknown failure',
    result: { ...(result ?? {}), stderr_tail: stderrTail || undefined },
    retry_after: retryAfter,
    ...(final ? { final } : {}),
  });
  log.warn({ reason, attempt, by: actor(ctx), status: doc.status }, doc.status.endsWith(' failed') ? 'step failed for good' : 'step failed, will retry');
  return { end: 'failed', doc };
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
