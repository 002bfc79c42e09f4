/** The checks of this machine: the site's folders, its batch system, the modes of the credential files. */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { BatchConfig } from '../../config/types.js';
import { errorMessage } from '../../core/errors.js';
import { type Check, failure, pass } from './check.js';
import type { PathScope } from './scope.js';

export async function checkPath(scope: PathScope, account: string): Promise<Check> {
  const what = `folder ${scope.path}`;
  const detail = `${scope.why}`;
  try {
    const info = await stat(scope.path);
    if (!info.isDirectory()) return failure(what, `${detail}: not a folder`, `make ${scope.path} a folder`);
  } catch {
    return failure(what, `${detail}: missing`, `mkdir -p ${scope.path}, ${scope.access === 'write' ? `writable by ${account}` : `readable by ${account}`}`);
  }
  const mode = scope.access === 'write' ? constants.W_OK | constants.X_OK : constants.R_OK | constants.X_OK;
  try {
    await access(scope.path, mode);
  } catch {
    return failure(
      what,
      `${detail}: not ${scope.access === 'write' ? 'writable' : 'readable'} by ${account}`,
      `chown or chmod ${scope.path} so that ${account} may ${scope.access} it`,
    );
  }
  return pass(what, `${detail}: present, ${scope.access === 'write' ? 'writable' : 'readable'}`);
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  missing: boolean;
}

/** Runs a program found through `env.PATH` (an argument vector, no shell), bounded in time. */
function run(program: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(program, args, { env, timeout: timeoutMs, maxBuffer: 1 << 20, encoding: 'utf8' }, (error, stdout, stderr) => {
      // An exit status is a number; a program that could not start has a string code (ENOENT); a killed one has none.
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ code: error ? (typeof code === 'number' ? code : null) : 0, stdout, stderr, missing: code === 'ENOENT' });
    });
  });
}

/** Whether `program` is an executable file in one of `env.PATH`'s folders. */
async function onPath(program: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, program), constants.X_OK);
      return true;
    } catch {
      // next folder
    }
  }
  return false;
}

const CLIENTS: Record<BatchConfig['system'], { programs: string[]; package: string; answers: [string, string[]] }> = {
  slurm: { programs: ['sbatch', 'scontrol', 'scancel'], package: 'slurm-client', answers: ['sinfo', ['--noheader', '--format=%P %a']] },
  // `qsub` without a script would wait on stdin: only looked up. `qstat` answers once qmaster does.
  sge: { programs: ['qsub', 'qstat', 'qdel'], package: 'gridengine-client', answers: ['qstat', []] },
};

export async function checkBatch(batch: BatchConfig, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Check> {
  const what = `batch system ${batch.system}`;
  const client = CLIENTS[batch.system];
  for (const program of client.programs)
    if (!(await onPath(program, env))) return failure(what, `no ${program} on PATH (${env.PATH ?? 'unset'})`, `install ${client.package} or fix PATH`);
  const [program, args] = client.answers;
  const answer = await run(program, args, env, timeoutMs);
  if (answer.missing) return failure(what, `no ${program} on PATH (${env.PATH ?? 'unset'})`, `install ${client.package} or fix PATH`);
  if (answer.code !== 0) {
    const said =
      (answer.stderr || answer.stdout).trim().split('\n')[0] || (answer.code === null ? `no answer within ${timeoutMs / 1000} s` : `exit ${answer.code}`);
    return failure(
      what,
      `${[program, ...args].join(' ')} failed: ${said}`,
      batch.system === 'slurm' ? 'check SLURM_CONF and that slurmctld answers (scontrol ping)' : 'check SGE_ROOT, SGE_CELL and that sge_qmaster answers',
    );
  }
  const version = batch.system === 'slurm' ? (await run('sbatch', ['--version'], env, timeoutMs)).stdout.trim() : '';
  const partitions =
    batch.system === 'slurm'
      ? `; partitions ${answer.stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.replace(/\s+/, ' '))
          .join(', ')}`
      : '';
  return pass(what, `${client.programs.join(', ')} found${version ? ` (${version})` : ''}; ${program} answers${partitions}`);
}

/** Password files and SSH keys must be readable by their owner only. */
export async function checkSecretFile(file: string, what: string, missing = 'create it (mode 0600)'): Promise<Check | undefined> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (error) {
    return failure(what, `${file}: ${errorMessage(error)}`, missing);
  }
  if ((mode & 0o077) !== 0) return failure(what, `${file} has mode ${(mode & 0o777).toString(8)}: others may read it`, `chmod 600 ${file}`);
  return undefined;
}
