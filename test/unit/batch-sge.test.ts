/**
 * Grid Engine cannot run on this machine (no gridengine package): the adapter is checked
 * against the output formats documented in qsub(1) and qstat(1) of (Sun/Son of) Grid Engine.
 */
import assert from 'node:assert/strict';
import type { Exec, ExecResult } from '../../agents/batch/exec.js';
import { SgeBatch, parseQstatJobState, parseQstatList, parseQsub, qstatSaysGone, sgeJobName, sgeState } from '../../agents/batch/sge.js';

/** qstat(1) default output: job-ID prior name user state submit/start at queue slots ja-task-ID. */
const QSTAT = `job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID
-----------------------------------------------------------------------------------------------------------------
    4711 0.55500 mesh-lyon- edelweis     r     11/27/2026 10:00:01 all.q@ccwsge0001.in2p3.fr          1
    4712 0.00000 mesh-lyon- edelweis     qw    11/27/2026 10:00:05                                    1
    4713 0.00000 mesh-lyon- edelweis     hqw   11/27/2026 10:00:06                                    1
    4714 0.55500 mesh-lyon- edelweis     Eqw   11/27/2026 10:00:07                                    1
    4715 0.55500 mesh-lyon- edelweis     dr    11/27/2026 10:00:08 all.q@ccwsge0002.in2p3.fr          1
    4716 0.55500 mesh-lyon- edelweis     t     11/27/2026 10:00:09 all.q@ccwsge0003.in2p3.fr          1
`;
/** qstat -j on a job that is gone (exit status 1, on stderr). */
const QSTAT_J_GONE_62 = 'Following jobs do not exist: \n4799\n';
const QSTAT_J_GONE_81 = 'Following jobs do not exist or permissions are not sufficient: \n4799\n';
/** qstat -j of a running job (Son of Grid Engine 8.1 prints job_state per task). */
const QSTAT_J_81 = `==============================================================
job_number:                 4711
exec_file:                  job_scripts/4711
submission_time:            Fri Nov 27 10:00:01 2026
owner:                      edelweis
job_name:                   mesh-lyon-proc1
job_state             1:    r
scheduling info:            (Collecting of scheduler job information is turned off)
`;
/** qstat -j of Grid Engine 6.2: no job_state line. */
const QSTAT_J_62 = QSTAT_J_81.replace(/^job_state.*\n/m, '');

function fakeExec(answer: (file: string, args: readonly string[]) => ExecResult, calls: Array<[string, readonly string[]]> = []): Exec {
  return async (file, args) => {
    calls.push([file, args]);
    return answer(file, args);
  };
}

describe('SGE adapter (documented formats; gridengine cannot run here)', () => {
  it('parses qsub output: -terse, array jobs, and the long form', () => {
    assert.equal(parseQsub('4711\n'), '4711');
    assert.equal(parseQsub('4720.1-10:1\n'), '4720');
    assert.equal(parseQsub('Your job 4711 ("mesh-lyon-proc1") has been submitted\n'), '4711');
    assert.equal(parseQsub('Your job-array 4720.1-10:1 ("a") has been submitted\n'), '4720');
    assert.throws(() => parseQsub('Unable to run job: denied: host "x" is no submit host.\n'), { code: 'BATCH_FAILED' });
  });

  it('reads the state column of qstat and maps the state letters', () => {
    assert.equal(parseQstatList(QSTAT, '4711'), 'r');
    assert.equal(parseQstatList(QSTAT, '4713'), 'hqw');
    assert.equal(parseQstatList(QSTAT, '47'), undefined);
    const expected: Record<string, string> = {
      '4711': 'running',
      '4712': 'pending',
      '4713': 'pending',
      '4714': 'failed',
      '4715': 'cancelled',
      '4716': 'running',
    };
    for (const [id, state] of Object.entries(expected)) assert.equal(sgeState(parseQstatList(QSTAT, id)!), state, id);
    assert.equal(sgeState('Rr'), 'running');
    assert.equal(sgeState('s'), 'running');
  });

  it('recognises a job qstat -j no longer knows, and the job_state line where there is one', () => {
    assert.ok(qstatSaysGone(QSTAT_J_GONE_62));
    assert.ok(qstatSaysGone(QSTAT_J_GONE_81));
    assert.ok(!qstatSaysGone(QSTAT_J_81));
    assert.equal(parseQstatJobState(QSTAT_J_81), 'r');
    assert.equal(parseQstatJobState(QSTAT_J_62), undefined);
  });

  it('asks qstat -j, then the qstat list when -j has no job_state', async () => {
    const calls: Array<[string, readonly string[]]> = [];
    const sge = new SgeBatch(
      fakeExec((_file, args) => (args[0] === '-j' ? { code: 0, stdout: QSTAT_J_62, stderr: '' } : { code: 0, stdout: QSTAT, stderr: '' }), calls),
    );
    assert.equal(await sge.state('4712'), 'pending');
    assert.deepEqual(calls, [
      ['qstat', ['-j', '4712']],
      ['qstat', []],
    ]);
    const gone = new SgeBatch(fakeExec(() => ({ code: 1, stdout: '', stderr: QSTAT_J_GONE_81 })));
    assert.equal(await gone.state('4799'), 'unknown');
    const direct = new SgeBatch(fakeExec(() => ({ code: 0, stdout: QSTAT_J_81, stderr: '' })));
    assert.equal(await direct.state('4711'), 'running');
  });

  it('submits with -terse, a legal job name, the logs, /bin/sh, no -V (the environment would show in qstat -j)', async () => {
    const calls: Array<[string, readonly string[]]> = [];
    const sge = new SgeBatch(fakeExec(() => ({ code: 0, stdout: '4711\n', stderr: '' }), calls));
    assert.equal(await sge.submit({ name: 'mesh-lyon-proc1', script: '/l/j.sh', stdout: '/l/j.out', stderr: '/l/j.err', options: ['-q', 'long'] }), '4711');
    assert.deepEqual(calls, [['qsub', ['-terse', '-N', 'mesh-lyon-proc1', '-o', '/l/j.out', '-e', '/l/j.err', '-S', '/bin/sh', '-q', 'long', '/l/j.sh']]]);
    assert.ok(!calls[0][1].includes('-V'));
    assert.equal(sgeJobName('1st job/x'), 'j1st_job_x');
  });
});
