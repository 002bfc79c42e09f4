/**
 * Runs one claimed run step (config/run-steps.ts) on its run document: writes the members file
 * (the members' paths, one per line), runs the argument vector with {run_name}, {members_file}
 * and {out}, keeps the lease, and records the outcome with the state machine, as a file step's
 * job does (step-job.ts). The success record lists the members the step was given (doc id, file,
 * sha256), so a file can be found in the archive. A `custody: true` step's {out} is a tar archive:
 * the agent reads it back, and only when every member is in it with its catalogued sha256 does
 * the success carry a custody record listing them; otherwise the attempt fails.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { StepConfig } from '../config/types.js';
import { RUN_PLACEHOLDERS } from '../config/run-steps.js';
import { expandParts, parseTemplate, unsafePath } from '../config/template.js';
import { linkSignals } from '../core/abort.js';
import { backoffDelay } from '../core/backoff.js';
import { sha256File } from '../core/checksum.js';
import { stepRecord } from '../core/document.js';
import { MeshError, errorMessage } from '../core/errors.js';
import { type RunCustody, type RunDocument, asStateDocument } from '../core/run-document.js';
import { type StepResult, transition } from '../core/state.js';
import { update, writtenOrThrow } from '../store/update.js';
import { SAFE_NAME } from './command.js';
import { checkProgram, isConfigurationFault } from './config-fault.js';
import type { AgentContext } from './context.js';
import { LeaseKeeper } from './lease.js';
import { runCommand, tail } from './runner.js';
import { runFolder } from './step-job.js';
import { tarEntries } from './tar-members.js';
import { apply } from './writes.js';

export type RunJobEnd = 'succeeded' | 'failed' | 'released' | 'lease-lost';

function expand(template: string, values: Record<string, string>): string {
  const parsed = parseTemplate(template, RUN_PLACEHOLDERS);
  if (!parsed.ok) throw new MeshError('CONFIG_INVALID', `configuration: template ${JSON.stringify(template)}: ${parsed.problem}`);
  return expandParts(parsed.parts, values);
}

/** The members' paths as the members file lists them; a path that could break the list is the document's fault. */
function memberLines(doc: RunDocument): string {
  for (const m of doc.members) {
    const problem = unsafePath(m.file);
    if (problem) throw new MeshError('DOCUMENT_MALFORMED', `${doc._id}: member ${m.doc_id} file ${JSON.stringify(m.file).slice(0, 120)} ${problem}`);
  }
  return doc.members.map((m) => `${m.file}\n`).join('');
}

/** The custody record of a verified archive, or why it is not one. */
async function verifyArchive(ctx: AgentContext, doc: RunDocument, step: StepConfig, out: string): Promise<RunCustody> {
  const entries = await tarEntries(out);
  const wrong = doc.members.filter((m) => entries.get(m.file)?.sha256 !== m.sha256);
  if (wrong.length > 0)
    throw new MeshError(
      'PROCESS_FAILED',
      `archive ${out} does not hold ${wrong.length} member(s) with their catalogued sha256 (first: ${wrong[0].file}); no custody recorded`,
    );
  const { size } = await stat(out);
  return {
    site: ctx.site.name,
    step: step.name,
    file: out,
    sha256: await sha256File(out),
    size_in_bytes: size,
    verified_at: ctx.now().toISOString(),
    account: ctx.db.user,
    members: doc.members.map((m) => ({ doc_id: m.doc_id, sha256: m.sha256 })),
  };
}

/** `ctx` is the run context (run-steps.ts runContext): its pipeline is the run steps. */
export async function runRunStep(ctx: AgentContext, claimed: RunDocument, step: StepConfig, stop: AbortSignal): Promise<{ end: RunJobEnd; doc: RunDocument }> {
  const log = ctx.logger.child({ doc: claimed._id, step: step.name });
  const state = asStateDocument(claimed);
  const lease = new LeaseKeeper(ctx, state, step.name, step.lease_s);
  const attempt = stepRecord(state, step.name)?.attempts ?? 1;
  const logBase = join(runFolder(ctx.site.log_dir, claimed._id), `${step.name}.${attempt}`);
  const stdoutPath = `${logBase}.out`;
  const stderrPath = `${logBase}.err`;
  const membersFile = `${logBase}.members`;
  const linked = linkSignals([stop, lease.signal]);
  let result: StepResult | undefined;
  let custody: RunCustody | undefined;
  let reason: string | undefined;
  let final = false;
  try {
    if (!SAFE_NAME.test(claimed.run_name)) throw new MeshError('DOCUMENT_MALFORMED', `${claimed._id}: run_name is not a plain name`);
    const values = { run_name: claimed.run_name, step: step.name, members_file: membersFile, out: '' };
    const out = expand(step.out, values);
    const outProblem = unsafePath(out);
    if (outProblem || basename(out).startsWith('-'))
      throw new MeshError('DOCUMENT_MALFORMED', `${claimed._id}: the output path ${JSON.stringify(out)} is unsafe`);
    await mkdir(dirname(logBase), { recursive: true });
    await writeFile(membersFile, memberLines(claimed));
    await mkdir(dirname(out), { recursive: true });
    const argv = step.run.map((arg) => expand(arg, { ...values, out }));
    await checkProgram(argv[0], process.env);
    const outcome = await runCommand(argv, { timeoutMs: step.timeout_s * 1000, signal: linked.signal, stdoutPath, stderrPath });
    result = {
      exit_code: outcome.exit_code,
      signal: outcome.signal,
      duration_s: Math.round(outcome.duration_s * 1000) / 1000,
      stdout: stdoutPath,
      stderr: stderrPath,
      processname: basename(argv[0]),
    };
    if (lease.signal.aborted) {
      await lease.stop();
      return { end: 'lease-lost', doc: lease.doc as unknown as RunDocument };
    }
    if (outcome.aborted) {
      const doc = await apply(ctx, await lease.stop(), { type: 'release', step: step.name, agent: ctx.name });
      log.info('released on shutdown');
      return { end: 'released', doc: doc as unknown as RunDocument };
    }
    if (outcome.spawn_error) reason = `cannot start ${argv[0]}: ${outcome.spawn_error}`;
    else if (outcome.timed_out) reason = `timed out after ${step.timeout_s} s`;
    else if (outcome.exit_code !== 0) reason = `exited with ${outcome.exit_code ?? `signal ${outcome.signal}`}`;
    else {
      const produced = await stat(out).then(
        (s) => (s.isFile() ? s.size : undefined),
        () => undefined,
      );
      if (produced !== undefined) Object.assign(result, { file: out, file_size: produced, checksum: { sha256: await sha256File(out) } });
      // What the archive holds, for finding a file in it: the members it was given.
      Object.assign(result, { members: claimed.members.map((m) => ({ doc_id: m.doc_id, file: m.file, sha256: m.sha256 })) });
      if (step.custody) custody = await verifyArchive(ctx, claimed, step, out);
    }
  } catch (error) {
    reason = errorMessage(error);
    final = isConfigurationFault(error);
  } finally {
    linked.release();
  }

  const latest = await lease.stop();
  if (lease.signal.aborted) return { end: 'lease-lost', doc: latest as unknown as RunDocument };
  if (reason === undefined && result) {
    const succeed = { type: 'succeed' as const, step: step.name, agent: ctx.name, result, user: ctx.db.user };
    // The success and its custody record in one write: no archive is recorded done without its proof, nor proof without the record.
    const written = await update(
      ctx.db,
      latest._id,
      (doc) => {
        const next = transition(doc ?? latest, succeed, ctx.now(), ctx.config);
        if (!next.ok) return { illegal: next.error };
        const before = (doc ?? latest).custody;
        return { write: custody ? { ...next.doc, custody: [...(Array.isArray(before) ? before : []), custody] } : next.doc };
      },
      { seen: latest },
    );
    const doc = writtenOrThrow(written, latest._id);
    log.info({ duration_s: result.duration_s, members: claimed.members.length, custody: custody !== undefined }, 'run step done');
    return { end: 'succeeded', doc: doc as unknown as RunDocument };
  }
  const delayMs = backoffDelay(attempt, { baseMs: ctx.config.agent.retry_base_s * 1000, capMs: ctx.config.agent.retry_cap_s * 1000, jitter: 0.5 });
  const stderrTail = await tail(stderrPath).catch(() => '');
  const doc = await apply(ctx, latest, {
    type: 'fail',
    step: step.name,
    agent: ctx.name,
    reason: reason ?? 'unknown failure',
    result: { ...(result ?? {}), stderr_tail: stderrTail || undefined },
    retry_after: new Date(ctx.now().getTime() + delayMs).toISOString(),
    ...(final ? { final } : {}),
  });
  log.warn({ reason, attempt, status: doc.status }, doc.status.endsWith(' failed') ? 'run step failed for good' : 'run step failed, will retry');
  return { end: 'failed', doc: doc as unknown as RunDocument };
}
