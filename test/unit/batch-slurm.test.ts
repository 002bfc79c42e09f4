import assert from 'node:assert/strict';
import { batchSystem } from '../../agents/batch/adapter.js';
import type { Exec, ExecResult } from '../../agents/batch/exec.js';
import { SlurmBatch, parseSbatch, parseScontrolJobState, slurmState } from '../../agents/batch/slurm.js';

/** `scontrol show job -o 1` as Slurm 22.05 printed it on this machine (abridged in the middle). */
const SCONTROL_RUNNING =
  'JobId=1 JobName=t1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED Partition=debug NodeList=vm BatchHost=vm Command=/tmp/job.sh WorkDir=/tmp StdErr=/tmp/e1 StdIn=/dev/null StdOut=/tmp/o1 Power= \n';
const SCONTROL_FAILED = 'JobId=2 JobName=wrap UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0\n';
/** An array job: one line per task, the first carrying ArrayJobId. */
const SCONTROL_ARRAY =
  'JobId=12 ArrayJobId=11 ArrayTaskId=1 JobName=a JobState=COMPLETED Reason=None\nJobId=11 ArrayJobId=11 ArrayTaskId=2 JobName=a JobState=PENDING Reason=Priority\n';

function fakeExec(answers: Record<string, ExecResult>, calls: Array<[string, readonly string[]]> = []): Exec {
  return async (file, args) => {
    calls.push([file, args]);
    const answer = answers[file];
    if (!answer) throw new Error(`unexpected command ${file}`);
    return answer;
  };
}

describe('Slurm adapter', () => {
  it('parses sbatch --parsable: "ID" and "ID;CLUSTER"', () => {
    assert.equal(parseSbatch('4711\n'), '4711');
    assert.equal(parseSbatch('4712;edelweiss\n'), '4712');
    assert.throws(() => parseSbatch('Submitted batch job 4711\n'), { code: 'BATCH_FAILED' });
    assert.throws(() => parseSbatch(''), { code: 'BATCH_FAILED' });
  });

  it('finds JobState in scontrol show job -o for the right job', () => {
    assert.equal(parseScontrolJobState(SCONTROL_RUNNING, '1'), 'RUNNING');
    assert.equal(parseScontrolJobState(SCONTROL_FAILED, '2'), 'FAILED');
    assert.equal(parseScontrolJobState(SCONTROL_ARRAY, '11'), 'PENDING');
    assert.equal(parseScontrolJobState(SCONTROL_RUNNING, '11'), undefined, 'JobId=1 is not JobId=11');
  });

  it('maps every documented Slurm job state', () => {
    const expected: Record<string, string> = {
      PENDING: 'pending',
      CONFIGURING: 'pending',
      REQUEUED: 'pending',
      REQUEUE_HOLD: 'pending',
      RESV_DEL_HOLD: 'pending',
      RUNNING: 'running',
      COMPLETING: 'running',
      SUSPENDED: 'running',
      STOPPED: 'running',
      SIGNALING: 'running',
      STAGE_OUT: 'running',
      RESIZING: 'running',
      COMPLETED: 'completed',
      CANCELLED: 'cancelled',
      REVOKED: 'cancelled',
      FAILED: 'failed',
      TIMEOUT: 'failed',
      NODE_FAIL: 'failed',
      OUT_OF_MEMORY: 'failed',
      BOOT_FAIL: 'failed',
      DEADLINE: 'failed',
      PREEMPTED: 'failed',
      SPECIAL_EXIT: 'failed',
      SOMETHING_NEW: 'unknown',
    };
    for (const [state, mapped] of Object.entries(expected)) assert.equal(slurmState(state), mapped, state);
  });

  it('submits with an argument vector: name, logs, site options, then the script', async () => {
    const calls: Array<[string, readonly string[]]> = [];
    const slurm = batchSystem(
      { system: 'slurm', options: ['--time=02:00:00'], docs_per_job: 5, mesh: ['mesh'] },
      fakeExec({ sbatch: { code: 0, stdout: '99\n', stderr: '' } }, calls),
    );
    assert.ok(slurm instanceof SlurmBatch);
    const id = await slurm.submit({
      name: 'mesh-lyon-proc1',
      script: '/logs/j.sh',
      stdout: '/logs/j.out',
      stderr: '/logs/j.err',
      options: ['--time=02:00:00'],
    });
    assert.equal(id, '99');
    assert.deepEqual(calls, [
      ['sbatch', ['--parsable', '--job-name', 'mesh-lyon-proc1', '--output', '/logs/j.out', '--error', '/logs/j.err', '--time=02:00:00', '/logs/j.sh']],
    ]);
  });

  it('reports a refused submission as BATCH_FAILED with what sbatch said', async () => {
    const slurm = new SlurmBatch(
      fakeExec({ sbatch: { code: 1, stdout: '', stderr: 'sbatch: error: Batch job submission failed: Invalid partition name specified\n' } }),
    );
    await assert.rejects(
      slurm.submit({ name: 'n', script: '/s', stdout: '/o', stderr: '/e', options: [] }),
      (e: Error & { code?: string }) => e.code === 'BATCH_FAILED' && /Invalid partition/.test(e.message),
    );
  });

  it('says unknown for an id Slurm no longer knows, and throws when scontrol cannot reach the controller', async () => {
    const gone = new SlurmBatch(fakeExec({ scontrol: { code: 1, stdout: '', stderr: 'slurm_load_jobs error: Invalid job id specified\n' } }));
    assert.equal(await gone.state('999'), 'unknown');
    const down = new SlurmBatch(
      fakeExec({ scontrol: { code: 1, stdout: '', stderr: 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n' } }),
    );
    await assert.rejects(down.state('1'), { code: 'BATCH_FAILED' });
    const running = new SlurmBatch(fakeExec({ scontrol: { code: 0, stdout: SCONTROL_RUNNING, stderr: '' } }));
    assert.equal(await running.state('1'), 'running');
  });

  it('refuses job ids that are not numbers before running anything', async () => {
    const calls: Array<[string, readonly string[]]> = [];
    const slurm = new SlurmBatch(fakeExec({}, calls));
    await assert.rejects(slurm.state('1; rm -rf /'), { code: 'BAD_INPUT' });
    await assert.rejects(slurm.cancel('--all'), { code: 'BAD_INPUT' });
    assert.deepEqual(calls, []);
  });
});
