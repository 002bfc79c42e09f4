/**
 * Sun/Son of/Univa Grid Engine: `qsub -terse`, `qstat -j`, `qstat`, `qdel`.
 *
 * Gridengine cannot run on the development machine (no package), so this adapter is tested
 * only against the output formats documented in qsub(1) and qstat(1) (test/unit/batch-sge.test.ts).
 *
 * Unlike Slurm, Grid Engine shows the environment a job was submitted with to every user
 * (`qstat -j` prints `env_list`), so jobs are submitted without `-V`: credentials reach an SGE
 * job only through the 0600 password file named in its job file.
 */
import { MeshError } from '../../core/errors.js';
import { type Exec, commandFailed } from './exec.js';
import type { BatchState, BatchSubmission, BatchSystem } from './types.js';

/** `qsub -terse` prints the id (`12345`, or `12345.1-10:1` for an array); without -terse, `Your job 12345 ("name") has been submitted`. */
export function parseQsub(stdout: string): string {
  const text = stdout.trim();
  const id = /^(\d+)(?:\.\S*)?$/m.exec(text)?.[1] ?? /Your job(?:-array)? (\d+)/.exec(text)?.[1];
  if (!id) throw new MeshError('BATCH_FAILED', `qsub printed ${JSON.stringify(text.slice(0, 200))}, expected a job id`);
  return id;
}

/** `qstat -j ID` for a job that is gone: "Following jobs do not exist: 12345" (newer: "… or permissions are not sufficient"). */
export function qstatSaysGone(output: string): boolean {
  return /following jobs do not exist/i.test(output);
}

/** The `job_state` line that newer `qstat -j` versions print (`job_state 1:    r`), if any. */
export function parseQstatJobState(stdout: string): string | undefined {
  return /^job_state\s+(?:\d+:\s*)?(\S+)\s*$/m.exec(stdout)?.[1];
}

/**
 * The state column of plain `qstat` for job `id`:
 * `job-ID prior name user state submit/start at queue slots ja-task-ID`.
 */
export function parseQstatList(stdout: string, id: string): string | undefined {
  for (const line of stdout.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === id && fields.length >= 5) return fields[4];
  }
  return undefined;
}

/** qstat(1) state letters: d(eletion) E(rror) h(old) r(unning) R(estarted) s/S(uspended) t(ransfering) T(hreshold) w(aiting) q(ueued). */
export function sgeState(letters: string): BatchState {
  if (letters.includes('d')) return 'cancelled';
  if (letters.includes('E')) return 'failed';
  if (/[rtsST]/.test(letters)) return 'running';
  if (/[qwh]/.test(letters) || letters.includes('R')) return 'pending';
  return 'unknown';
}

export class SgeBatch implements BatchSystem {
  readonly name = 'sge' as const;

  constructor(private readonly exec: Exec) {}

  async submit(job: BatchSubmission): Promise<string> {
    const args = ['-terse', '-N', sgeJobName(job.name), '-o', job.stdout, '-e', job.stderr, '-S', '/bin/sh', ...job.options, job.script];
    const result = await this.exec('qsub', args);
    if (result.code !== 0) throw commandFailed('qsub', args, result);
    return parseQsub(result.stdout);
  }

  async state(id: string): Promise<BatchState> {
    checkId(id);
    const detail = await this.exec('qstat', ['-j', id]);
    if (qstatSaysGone(`${detail.stdout}\n${detail.stderr}`)) return 'unknown';
    if (detail.code !== 0) throw commandFailed('qstat', ['-j', id], detail);
    const fromDetail = parseQstatJobState(detail.stdout);
    if (fromDetail) return sgeState(fromDetail);
    const list = await this.exec('qstat', []);
    if (list.code !== 0) throw commandFailed('qstat', [], list);
    const letters = parseQstatList(list.stdout, id);
    // Known to `qstat -j` but not listed: it just finished or is being deleted.
    return letters === undefined ? 'unknown' : sgeState(letters);
  }

  async cancel(id: string): Promise<void> {
    checkId(id);
    const result = await this.exec('qdel', [id]);
    if (result.code !== 0) throw commandFailed('qdel', [id], result);
  }
}

/** SGE job names may not start with a digit nor contain `/ : @ \ * ?` or white space. */
export function sgeJobName(name: string): string {
  const clean = name.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z]/.test(clean) ? clean : `j${clean}`;
}

function checkId(id: string): void {
  if (!/^\d+$/.test(id)) throw new MeshError('BAD_INPUT', `${JSON.stringify(id)} is not a Grid Engine job id`);
}
