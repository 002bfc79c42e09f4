/**
 * Sun/Son of/Univa Grid Engine: `qsub -terse`, `qstat -j`, `qstat`, `qacct -j`, `qdel`.
 *
 * Checked against a real Son of Grid Engine 8.1.9 (Debian's gridengine packages, a one-host
 * cluster the tests start: test/integration/batch-systems.test.ts); the outputs it printed are
 * the fixtures of test/unit/batch-sge.test.ts.
 *
 * Grid Engine forgets a job as soon as it ends (`qstat -j` then says "Following jobs do not
 * exist"), so how it ended comes from its accounting record (`qacct -j`), and a job deleted
 * before it ever started, which has none, from the list of finished jobs (`qstat -s z`).
 *
 * Unlike Slurm, Grid Engine shows the environment a job was submitted with to every user
 * (`qstat -j` prints `env_list`), so jobs are submitted without `-V` (and submission options
 * that would pass a password are refused): credentials reach an SGE job only through the 0600
 * password file named in its job file (`MESH_<SITE>_PASSWORD_FILE`).
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

/** `qstat -j ID` for a job that is gone: "Following jobs do not exist: \n12345" on stderr, exit 1 (newer: "… or permissions are not sufficient"). */
export function qstatSaysGone(output: string): boolean {
  return /following jobs do not exist/i.test(output);
}

/**
 * The `job_state` line some Grid Engines' `qstat -j` print (`job_state 1:    r`), if any.
 * Son of Grid Engine 8.1.9 prints none: a running job shows `usage 1:`, a job in error `error reason 1:`.
 */
export function parseQstatJobState(stdout: string): string | undefined {
  return /^job_state\s+(?:\d+:\s*)?(\S+)\s*$/m.exec(stdout)?.[1];
}

/** A `name: value` field of `qstat -j` (`owner:  root`). */
export function parseQstatField(stdout: string, name: string): string | undefined {
  return new RegExp(`^${name}:\\s+(\\S.*?)\\s*$`, 'm').exec(stdout)?.[1];
}

/**
 * The state column of plain `qstat` (and `qstat -s z`) for job `id`:
 * `job-ID prior name user state submit/start at queue slots ja-task-ID`. Nothing at all when no job is listed.
 */
export function parseQstatList(stdout: string, id: string): string | undefined {
  for (const line of stdout.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === id && fields.length >= 5) return fields[4];
  }
  return undefined;
}

/** qstat(1) state letters: d(eletion) E(rror) h(old) r(unning) R(estarted) s/S(uspended) t(ransfering) T(hreshold) w(aiting) q(ueued) z(ombie: finished). */
export function sgeState(letters: string): BatchState {
  if (letters.includes('d')) return 'cancelled';
  // Eqw: the job could not start (an output path it cannot open, a shell that does not exist);
  // Grid Engine keeps it queued in error until an operator clears or deletes it.
  if (letters.includes('E')) return 'stuck';
  if (/[rtsST]/.test(letters)) return 'running';
  if (/[qwh]/.test(letters) || letters.includes('R')) return 'pending';
  return 'unknown';
}

export interface SgeAccounting {
  /** 0, or why Grid Engine ended the job: `100` (`assumedly after job`) when a signal killed it, `26` (`opening input/output file`), `37` (`qmaster enforced h_rt …`). */
  failed: number;
  failedReason: string;
  exitStatus: number;
}

/** The last record of `qacct -j ID` (the job's most recent run), or undefined when there is none. */
export function parseQacct(stdout: string): SgeAccounting | undefined {
  const records = stdout.split(/^={20,}\s*$/m).filter((r) => /^jobnumber\s/m.test(r));
  const last = records.at(-1);
  if (last === undefined) return undefined;
  const failed = /^failed\s+(\d+)\s*(?::\s*(.*?))?\s*$/m.exec(last);
  const exit = /^exit_status\s+(\d+)/m.exec(last);
  if (!failed || !exit) return undefined;
  return { failed: Number(failed[1]), failedReason: failed[2] ?? '', exitStatus: Number(exit[1]) };
}

/**
 * How a job ended, from its accounting record. `failed 100` is what a `qdel` of a running job
 * leaves, and also any other signal that killed it (the accounting of 8.1.9 does not tell them
 * apart); both end the job without its results, which is all the sweeper needs to know.
 */
export function accountingState(record: SgeAccounting): BatchState {
  if (record.failed === 100) return 'cancelled';
  return record.failed === 0 && record.exitStatus === 0 ? 'completed' : 'failed';
}

export class SgeBatch implements BatchSystem {
  readonly name = 'sge' as const;
  readonly jobInheritsEnvironment = false;

  constructor(private readonly exec: Exec) {}

  async submit(job: BatchSubmission): Promise<string> {
    checkOptions(job.options);
    const args = ['-terse', '-N', sgeJobName(job.name), '-o', job.stdout, '-e', job.stderr, '-S', '/bin/sh', ...job.options, job.script];
    const result = await this.exec('qsub', args);
    if (result.code !== 0) throw commandFailed('qsub', args, result);
    return parseQsub(result.stdout);
  }

  /**
   * `qstat -j` says whether the qmaster still holds the job and whose it is; the owner's `qstat`
   * list gives its state letters. A job it no longer holds ended: `qacct -j` tells how; one
   * without accounting that `qstat -s z` lists among the finished never ran (deleted while
   * queued). 'unknown' only when neither knows it (accounting off or unreadable here, or the
   * job long gone), which the sweeper judges after its grace.
   */
  async state(id: string): Promise<BatchState> {
    checkId(id);
    const detail = await this.exec('qstat', ['-j', id]);
    const gone = qstatSaysGone(`${detail.stdout}\n${detail.stderr}`);
    if (!gone) {
      if (detail.code !== 0) throw commandFailed('qstat', ['-j', id], detail);
      const fromDetail = parseQstatJobState(detail.stdout);
      if (fromDetail) return sgeState(fromDetail);
      const args = ['-u', parseQstatField(detail.stdout, 'owner') ?? '*'];
      const list = await this.exec('qstat', args);
      if (list.code !== 0) throw commandFailed('qstat', args, list);
      const letters = parseQstatList(list.stdout, id);
      if (letters !== undefined) return sgeState(letters);
      // Held by the qmaster but no longer listed: it is ending right now.
    }
    const record = await this.accounting(id);
    if (record) return accountingState(record);
    const zombies = await this.exec('qstat', ['-s', 'z', '-u', '*']);
    if (zombies.code === 0 && parseQstatList(zombies.stdout, id) !== undefined) return 'cancelled';
    return 'unknown';
  }

  /** `qdel ID`; a job Grid Engine no longer knows (`denied: job "N" does not exist`) is as good as deleted. */
  async cancel(id: string): Promise<void> {
    checkId(id);
    const result = await this.exec('qdel', [id]);
    if (result.code !== 0 && !/does not exist/i.test(`${result.stdout}\n${result.stderr}`)) throw commandFailed('qdel', [id], result);
  }

  /** The job's accounting record; none when qacct has none yet, or cannot be run or read here (a site may not share the accounting file). */
  private async accounting(id: string): Promise<SgeAccounting | undefined> {
    const result = await this.exec('qacct', ['-j', id]).catch(() => undefined);
    return result?.code === 0 ? parseQacct(result.stdout) : undefined;
  }
}

/** SGE job names may not start with a digit nor contain `/ : @ \ * ?` or white space. */
export function sgeJobName(name: string): string {
  const clean = name.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z]/.test(clean) ? clean : `j${clean}`;
}

/** `-V` (the whole environment) and a `-v` naming a password would show the password to every user in `qstat -j`. */
function checkOptions(options: readonly string[]): void {
  options.forEach((option, i) => {
    const passes = option === '-V' || (option === '-v' && /PASSWORD/i.test(options[i + 1] ?? ''));
    if (passes)
      throw new MeshError(
        'BAD_INPUT',
        `the Grid Engine submission options contain ${option === '-V' ? '-V' : `-v ${options[i + 1]}`}: qstat -j shows a job's environment to every user, so credentials must not travel in it; set MESH_<SITE>_PASSWORD_FILE instead (the job reads the file named in its job file)`,
      );
  });
}

function checkId(id: string): void {
  if (!/^\d+$/.test(id)) throw new MeshError('BAD_INPUT', `${JSON.stringify(id)} is not a Grid Engine job id`);
}
