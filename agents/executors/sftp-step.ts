/**
 * A claimed `executor: 'sftp'` step: the document's file goes to `{out}` on the step's
 * destination site (`to`), which the config builds under that site's storage. It reports
 * like a command would (an outcome and two log files), so step-job.ts records it the same way.
 */
import { appendFile } from 'node:fs/promises';
import type { StepConfig } from '../../config/types.js';
import { linkSignals } from '../../core/abort.js';
import type { DaqDocument } from '../../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { TemplateVars } from '../command.js';
import type { AgentContext } from '../context.js';
import type { RunOutcome } from '../runner.js';
import { transfer } from './sftp-transfer.js';

export interface SftpStepOutcome {
  outcome: RunOutcome;
  /** Set when the transfer failed: why, in words. */
  failure?: string;
  /** Set on success: what goes into the step record. */
  fields?: { file: string; checksum: { sha256: string }; bytes: number; file_size: number; throughput_mbps: number };
}

export async function runSftpStep(
  ctx: AgentContext,
  doc: DaqDocument,
  step: StepConfig,
  vars: TemplateVars,
  options: { signal: AbortSignal; stdoutPath: string; stderrPath: string; logger: Logger },
): Promise<SftpStepOutcome> {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  // By hand (core/abort.ts): a signal from AbortSignal.any can be collected mid-transfer.
  const linked = linkSignals([options.signal], { timeoutMs: step.timeout_s * 1000 });
  const signal = linked.signal;
  const destination = step.to ? ctx.config.sites[step.to] : undefined;
  const outcome = (exitCode: number | null): RunOutcome => ({
    exit_code: exitCode,
    signal: null,
    duration_s: elapsed(),
    timed_out: linked.timedOut,
    aborted: options.signal.aborted,
  });
  try {
    if (!destination?.ssh)
      throw new MeshError('CONFIG_INVALID', `step ${step.name} transfers to site ${step.to ?? '(none)'}, which has no ssh settings in ${ctx.config.source}`);
    options.logger.debug({ to: destination.name, target: vars.out }, 'transferring');
    const sent = await transfer({
      source: vars.file,
      target: vars.out,
      ssh: destination.ssh,
      site: destination.name,
      signal,
      expectedSha256: doc.checksum?.sha256,
    });
    const mbps = Math.round(sent.mbps * 10) / 10;
    await appendFile(
      options.stdoutPath,
      `${JSON.stringify({ to: destination.name, target: vars.out, bytes: sent.bytes, seconds: sent.seconds, mbps, sha256: sent.sha256, verified_by: sent.verified_by })}\n`,
    );
    options.logger.info({ bytes: sent.bytes, mbps, verified_by: sent.verified_by }, 'transferred');
    return {
      outcome: outcome(0),
      fields: { file: vars.out, checksum: { sha256: sent.sha256 }, bytes: sent.bytes, file_size: sent.bytes, throughput_mbps: mbps },
    };
  } catch (error) {
    const failure = linked.timedOut ? `transfer timed out after ${step.timeout_s} s` : errorMessage(error);
    await appendFile(options.stderrPath, `${isMeshError(error) ? `${error.code}: ` : ''}${failure}\n`).catch(() => undefined);
    return { outcome: outcome(null), failure };
  } finally {
    linked.release();
  }
}
