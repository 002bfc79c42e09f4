/**
 * The SGE adapter against what a real Son of Grid Engine 8.1.9 (Debian 12's gridengine
 * packages, the one-host cluster of cli/local/sge.ts) printed. The outputs are verbatim except
 * the temporary folder (now /scratch/lyon) and the submitter's PATH in `sge_o_path`. Jobs 3 and
 * 4 ran `sleep`, 5 waited for a slot, 6 was held (`-h`), 7 had `-o` into a folder that does not
 * exist, 8 ran a script whose `exec` target does not exist, 9 completed.
 */
import assert from 'node:assert/strict';
import type { Exec, ExecResult } from '../../agents/batch/exec.js';
import { MeshError } from '../../core/errors.js';
import {
  SgeBatch,
  accountingState,
  parseQacct,
  parseQstatField,
  parseQstatJobState,
  parseQstatList,
  parseQsub,
  qstatSaysGone,
  sgeJobName,
  sgeState,
} from '../../agents/batch/sge.js';

// qstat.txt (exit 0)
const QSTAT = `job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID 
-----------------------------------------------------------------------------------------------------------------
      3 0.75000 mesh-lyon- root         r     12/01/2026 17:43:48 all.q@vm                           1        
      4 0.75000 mesh-lyon- root         r     12/01/2026 17:43:48 all.q@vm                           1        
      5 0.25000 mesh-lyon- root         qw    12/01/2026 17:43:49                                    1        
      7 0.25000 mesh-lyon- root         qw    12/01/2026 17:43:49                                    1        
      6 0.00000 mesh-lyon- root         hqw   12/01/2026 17:43:49                                    1        
`;

// qstat-dr.txt (exit 0)
const QSTAT_DR = `job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID 
-----------------------------------------------------------------------------------------------------------------
      3 0.75000 mesh-lyon- root         dr    12/01/2026 17:43:48 all.q@vm                           1        
      4 0.75000 mesh-lyon- root         r     12/01/2026 17:43:48 all.q@vm                           1        
      5 0.25000 mesh-lyon- root         qw    12/01/2026 17:43:49                                    1        
      7 0.25000 mesh-lyon- root         qw    12/01/2026 17:43:49                                    1        
      6 0.00000 mesh-lyon- root         hqw   12/01/2026 17:43:49                                    1        
`;

// qstat-eqw.txt (exit 0)
const QSTAT_EQW = `job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID 
-----------------------------------------------------------------------------------------------------------------
      7 0.50000 mesh-lyon- root         Eqw   12/01/2026 17:43:49                                    1        
`;

// qstat-zombies.txt (exit 0)
const QSTAT_ZOMBIES = `job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID 
-----------------------------------------------------------------------------------------------------------------
      1 0.00000 ok.sh      root         z     12/01/2026 17:43:37                                    1        
      2 0.00000 ok.sh      root         z     12/01/2026 17:43:37                                    1        
      6 0.00000 mesh-lyon- root         z     12/01/2026 17:43:49                                    1        
      3 0.00000 mesh-lyon- root         z     12/01/2026 17:43:48                                    1        
      4 0.00000 mesh-lyon- root         z     12/01/2026 17:43:48                                    1        
      5 0.25000 mesh-lyon- root         z     12/01/2026 17:43:49                                    1        
      7 0.00000 mesh-lyon- root         z     12/01/2026 17:43:49                                    1        
      8 0.00000 mesh-lyon- root         z     12/01/2026 17:44:07                                    1        
      9 0.00000 mesh-lyon- root         z     12/01/2026 17:44:07                                    1        
`;

// qstat-j-running.txt (exit 0)
const QSTAT_J_RUNNING = `==============================================================
job_number:                 3
exec_file:                  job_scripts/3
submission_time:            Tue Dec  1 17:43:48 2026
owner:                      root
uid:                        0
group:                      root
gid:                        0
sge_o_home:                 /root
sge_o_path:                 /usr/local/bin:/usr/bin:/bin
sge_o_shell:                /bin/bash
sge_o_workdir:              /scratch/lyon
sge_o_host:                 localhost
account:                    sge
stderr_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.err
mail_list:                  root@vm
notify:                     FALSE
job_name:                   mesh-lyon-proc1
stdout_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.out
jobshare:                   0
shell_list:                 NONE:/bin/sh
env_list:                   TERM=NONE
script_file:                sleep.sh
binding:                    NONE
job_type:                   NONE
usage         1:            cpu=00:00:00, mem=0.00000 GB s, io=0.00000 GB, vmem=N/A, maxvmem=N/A
binding       1:            NONE
scheduling info:            queue instance "all.q@vm" dropped because it is full
                            All queues dropped because of overload or full
`;

// qstat-j-queued.txt (exit 0)
const QSTAT_J_QUEUED = `==============================================================
job_number:                 5
exec_file:                  job_scripts/5
submission_time:            Tue Dec  1 17:43:49 2026
owner:                      root
uid:                        0
group:                      root
gid:                        0
sge_o_home:                 /root
sge_o_path:                 /usr/local/bin:/usr/bin:/bin
sge_o_shell:                /bin/bash
sge_o_workdir:              /scratch/lyon
sge_o_host:                 localhost
account:                    sge
stderr_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.err
mail_list:                  root@vm
notify:                     FALSE
job_name:                   mesh-lyon-proc1
stdout_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.out
jobshare:                   0
shell_list:                 NONE:/bin/sh
env_list:                   TERM=NONE
script_file:                sleep.sh
binding:                    NONE
job_type:                   NONE
scheduling info:            queue instance "all.q@vm" dropped because it is full
                            All queues dropped because of overload or full
`;

// qstat-j-held.txt (exit 0)
const QSTAT_J_HELD = `==============================================================
job_number:                 6
exec_file:                  job_scripts/6
submission_time:            Tue Dec  1 17:43:49 2026
owner:                      root
uid:                        0
group:                      root
gid:                        0
sge_o_home:                 /root
sge_o_path:                 /usr/local/bin:/usr/bin:/bin
sge_o_shell:                /bin/bash
sge_o_workdir:              /scratch/lyon
sge_o_host:                 localhost
account:                    sge
stderr_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.err
mail_list:                  root@vm
notify:                     FALSE
job_name:                   mesh-lyon-proc1
stdout_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.out
jobshare:                   0
shell_list:                 NONE:/bin/sh
env_list:                   TERM=NONE
script_file:                sleep.sh
binding:                    NONE
job_type:                   NONE
scheduling info:            queue instance "all.q@vm" dropped because it is full
                            All queues dropped because of overload or full
                            Job is in hold state
`;

// qstat-j-eqw.txt (exit 0)
const QSTAT_J_EQW = `==============================================================
job_number:                 7
exec_file:                  job_scripts/7
submission_time:            Tue Dec  1 17:43:49 2026
owner:                      root
uid:                        0
group:                      root
gid:                        0
sge_o_home:                 /root
sge_o_path:                 /usr/local/bin:/usr/bin:/bin
sge_o_shell:                /bin/bash
sge_o_workdir:              /scratch/lyon
sge_o_host:                 localhost
account:                    sge
stderr_path_list:           NONE:NONE:/scratch/lyon/batch/mesh-lyon-proc1.err
mail_list:                  root@vm
notify:                     FALSE
job_name:                   mesh-lyon-proc1
stdout_path_list:           NONE:NONE:/scratch/lyon/missing/job.out
jobshare:                   0
shell_list:                 NONE:/bin/sh
env_list:                   TERM=NONE
script_file:                ok.sh
binding:                    NONE
job_type:                   NONE
error reason          1:      12/01/2026 17:44:05 [0:8817]: error: can't open output file "/scratch/lyon/missing/job.out": No such file or directory
scheduling info:            There are no messages available
`;

// qstat-j-gone.txt (exit 1)
const QSTAT_J_GONE = `Following jobs do not exist: 
3
`;

// qacct-completed.txt (exit 0)
const QACCT_COMPLETED = `==============================================================
qname        all.q               
hostname     vm                  
group        root                
owner        root                
project      NONE                
department   defaultdepartment   
jobname      mesh-lyon-proc1     
jobnumber    9                   
taskid       undefined
account      sge                 
priority     0                   
qsub_time    Tue Dec  1 17:44:07 2026
start_time   Tue Dec  1 17:44:07 2026
end_time     Tue Dec  1 17:44:07 2026
granted_pe   NONE                
slots        1                   
failed       0    
exit_status  0                   
ru_wallclock 0s
ru_utime     0.008s
ru_stime     0.005s
ru_maxrss    4.551KB
ru_ixrss     0.000B
ru_ismrss    0.000B
ru_idrss     0.000B
ru_isrss     0.000B
ru_minflt    493                 
ru_majflt    0                   
ru_nswap     0                   
ru_inblock   0                   
ru_oublock   16                  
ru_msgsnd    0                   
ru_msgrcv    0                   
ru_nsignals  0                   
ru_nvcsw     9                   
ru_nivcsw    4                   
cpu          0.013s
mem          0.000Bs
io           0.000B
iow          0.000s
maxvmem      0.000B
arid         undefined
ar_sub_time  undefined
category     NONE
`;

// qacct-failed.txt (exit 0)
const QACCT_FAILED = `==============================================================
qname        all.q               
hostname     vm                  
group        root                
owner        root                
project      NONE                
department   defaultdepartment   
jobname      mesh-lyon-proc1     
jobnumber    8                   
taskid       undefined
account      sge                 
priority     0                   
qsub_time    Tue Dec  1 17:44:07 2026
start_time   Tue Dec  1 17:44:07 2026
end_time     Tue Dec  1 17:44:07 2026
granted_pe   NONE                
slots        1                   
failed       0    
exit_status  127                 
ru_wallclock 0s
ru_utime     0.007s
ru_stime     0.004s
ru_maxrss    4.496KB
ru_ixrss     0.000B
ru_ismrss    0.000B
ru_idrss     0.000B
ru_isrss     0.000B
ru_minflt    496                 
ru_majflt    0                   
ru_nswap     0                   
ru_inblock   0                   
ru_oublock   48                  
ru_msgsnd    0                   
ru_msgrcv    0                   
ru_nsignals  0                   
ru_nvcsw     9                   
ru_nivcsw    5                   
cpu          0.011s
mem          0.000Bs
io           0.000B
iow          0.000s
maxvmem      0.000B
arid         undefined
ar_sub_time  undefined
category     NONE
`;

// qacct-qdel-running.txt (exit 0)
const QACCT_QDEL_RUNNING = `==============================================================
qname        all.q               
hostname     vm                  
group        root                
owner        root                
project      NONE                
department   defaultdepartment   
jobname      mesh-lyon-proc1     
jobnumber    3                   
taskid       undefined
account      sge                 
priority     0                   
qsub_time    Tue Dec  1 17:43:48 2026
start_time   Tue Dec  1 17:43:48 2026
end_time     Tue Dec  1 17:43:53 2026
granted_pe   NONE                
slots        1                   
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 5s
ru_utime     0.003s
ru_stime     0.008s
ru_maxrss    4.668KB
ru_ixrss     0.000B
ru_ismrss    0.000B
ru_idrss     0.000B
ru_isrss     0.000B
ru_minflt    492                 
ru_majflt    0                   
ru_nswap     0                   
ru_inblock   0                   
ru_oublock   8                   
ru_msgsnd    0                   
ru_msgrcv    0                   
ru_nsignals  0                   
ru_nvcsw     14                  
ru_nivcsw    7                   
cpu          0.010s
mem          0.000Bs
io           33.554KB
iow          0.000s
maxvmem      2.996MB
arid         undefined
ar_sub_time  undefined
category     NONE
`;

// qacct-eqw-before-qdel.txt (exit 0)
const QACCT_EQW = `==============================================================
qname        all.q               
hostname     vm                  
group        root                
owner        root                
project      NONE                
department   defaultdepartment   
jobname      mesh-lyon-proc1     
jobnumber    7                   
taskid       undefined
account      sge                 
priority     0                   
qsub_time    Tue Dec  1 17:43:49 2026
start_time   -/-
end_time     -/-
granted_pe   NONE                
slots        1                   
failed       26  : opening input/output file
exit_status  0                   
ru_wallclock 0s
ru_utime     0.000s
ru_stime     0.000s
ru_maxrss    0.000B
ru_ixrss     0.000B
ru_ismrss    0.000B
ru_idrss     0.000B
ru_isrss     0.000B
ru_minflt    0                   
ru_majflt    0                   
ru_nswap     0                   
ru_inblock   0                   
ru_oublock   0                   
ru_msgsnd    0                   
ru_msgrcv    0                   
ru_nsignals  0                   
ru_nvcsw     0                   
ru_nivcsw    0                   
cpu          0.000s
mem          0.000Bs
io           0.000B
iow          0.000s
maxvmem      0.000B
arid         undefined
ar_sub_time  undefined
category     NONE
`;

// qacct-held-deleted.txt (exit 1)
const QACCT_NONE = `error: job id 6 not found
`;

// qdel-running.txt (exit 0)
const QDEL_RUNNING = `root has registered the job 3 for deletion
`;

// qdel-held.txt (exit 0)
const QDEL_HELD = `root has deleted job 6
`;

// qdel-unknown.txt (exit 1)
const QDEL_UNKNOWN = `denied: job "999" does not exist
`;

// qstat-empty.txt (exit 0)
const QSTAT_EMPTY = ``;

/** From a job with `-l h_rt=2` that slept longer (the rest of the record as above). */
const QACCT_H_RT = `==============================================================
qname        all.q               
jobnumber    14                  
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
`;
/** Documented for other Grid Engines (not printed by 8.1.9): a `job_state` line in `qstat -j`. */
const QSTAT_J_WITH_JOB_STATE = QSTAT_J_RUNNING.replace(/^usage .*$/m, 'job_state             1:    r');

const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: '' });
const exit1 = (stderr: string): ExecResult => ({ code: 1, stdout: '', stderr });

/** An Exec answering `command args…` from a table; anything else fails the test. */
function scripted(answers: Record<string, ExecResult | Error>, calls: string[] = []): Exec {
  return async (file, args) => {
    const line = [file, ...args].join(' ');
    calls.push(line);
    const answer = answers[line];
    if (answer === undefined) throw new Error(`unexpected command: ${line}`);
    if (answer instanceof Error) throw answer;
    return answer;
  };
}

describe('SGE adapter (outputs of a real Son of Grid Engine 8.1.9)', () => {
  it('parses qsub output: -terse, array jobs, and the long form', () => {
    assert.equal(parseQsub('9\n'), '9');
    assert.equal(parseQsub('4720.1-10:1\n'), '4720');
    assert.equal(parseQsub('Your job 4711 ("mesh-lyon-proc1") has been submitted\n'), '4711');
    assert.equal(parseQsub('Your job-array 4720.1-10:1 ("a") has been submitted\n'), '4720');
    assert.throws(() => parseQsub('Unable to run job: unknown resource "nosuch"\nExiting.\n'), { code: 'BATCH_FAILED' });
  });

  it('reads the state column of qstat and qstat -s z, and maps the state letters', () => {
    assert.equal(parseQstatList(QSTAT, '3'), 'r');
    assert.equal(parseQstatList(QSTAT, '5'), 'qw');
    assert.equal(parseQstatList(QSTAT, '6'), 'hqw');
    assert.equal(parseQstatList(QSTAT_DR, '3'), 'dr');
    assert.equal(parseQstatList(QSTAT_EQW, '7'), 'Eqw');
    assert.equal(parseQstatList(QSTAT_ZOMBIES, '6'), 'z');
    assert.equal(parseQstatList(QSTAT, '30'), undefined);
    assert.equal(parseQstatList(QSTAT_EMPTY, '3'), undefined, 'an empty queue prints nothing at all');
    const expected: Record<string, string> = { r: 'running', t: 'running', qw: 'pending', hqw: 'pending', Eqw: 'stuck', dr: 'cancelled', dqw: 'cancelled' };
    for (const [letters, state] of Object.entries(expected)) assert.equal(sgeState(letters), state, letters);
    assert.equal(sgeState('Rr'), 'running');
    assert.equal(sgeState('s'), 'running');
    assert.equal(sgeState('z'), 'unknown');
  });

  it('reads qstat -j: gone, owner, no job_state line in 8.1.9 (running shows usage, Eqw an error reason)', () => {
    assert.ok(qstatSaysGone(QSTAT_J_GONE));
    assert.ok(qstatSaysGone('Following jobs do not exist or permissions are not sufficient: \n4799\n'), 'newer wording');
    for (const detail of [QSTAT_J_RUNNING, QSTAT_J_QUEUED, QSTAT_J_HELD, QSTAT_J_EQW]) {
      assert.ok(!qstatSaysGone(detail));
      assert.equal(parseQstatJobState(detail), undefined);
      assert.equal(parseQstatField(detail, 'owner'), 'root');
    }
    assert.match(QSTAT_J_RUNNING, /^usage\s+1:/m);
    assert.match(QSTAT_J_EQW, /^error reason\s+1:.*can't open output file/m);
    assert.equal(parseQstatField(QSTAT_J_HELD, 'env_list'), 'TERM=NONE', 'submitted without -V: nothing of the environment');
    assert.equal(parseQstatJobState(QSTAT_J_WITH_JOB_STATE), 'r');
  });

  it('reads qacct -j: completed, failed, killed by qdel (100), never started (26), over h_rt (37), none', () => {
    const cases: Array<[string, number, string, number, string]> = [
      [QACCT_COMPLETED, 0, '', 0, 'completed'],
      [QACCT_FAILED, 0, '', 127, 'failed'],
      [QACCT_QDEL_RUNNING, 100, 'assumedly after job', 137, 'cancelled'],
      [QACCT_EQW, 26, 'opening input/output file', 0, 'failed'],
      [QACCT_H_RT, 37, 'qmaster enforced h_rt, h_cpu, or h_vmem limit', 137, 'failed'],
    ];
    for (const [text, failed, failedReason, exitStatus, state] of cases) {
      const record = parseQacct(text);
      assert.deepEqual(record, { failed, failedReason, exitStatus });
      assert.equal(
        accountingState(record!),
        state,
        text.split('\n').find((l) => l.startsWith('failed')),
      );
    }
    assert.equal(parseQacct(QACCT_NONE), undefined);
    assert.equal(parseQacct(''), undefined);
    assert.deepEqual(parseQacct(QACCT_EQW + QACCT_COMPLETED), { failed: 0, failedReason: '', exitStatus: 0 }, 'a job run again: its last record');
  });

  it("state: qstat -j, then the owner's qstat list", async () => {
    const table = {
      'qstat -j 3': ok(QSTAT_J_RUNNING),
      'qstat -j 5': ok(QSTAT_J_QUEUED),
      'qstat -j 6': ok(QSTAT_J_HELD),
      'qstat -u root': ok(QSTAT),
    };
    const calls: string[] = [];
    const sge = new SgeBatch(scripted(table, calls));
    assert.equal(await sge.state('3'), 'running');
    assert.deepEqual(calls, ['qstat -j 3', 'qstat -u root']);
    assert.equal(await sge.state('5'), 'pending');
    assert.equal(await sge.state('6'), 'pending');
    const deleting = new SgeBatch(scripted({ 'qstat -j 3': ok(QSTAT_J_RUNNING), 'qstat -u root': ok(QSTAT_DR) }));
    assert.equal(await deleting.state('3'), 'cancelled', 'dr: qdel registered, the job is ending');
    const inError = new SgeBatch(scripted({ 'qstat -j 7': ok(QSTAT_J_EQW), 'qstat -u root': ok(QSTAT_EQW) }));
    assert.equal(await inError.state('7'), 'stuck');
    const other = new SgeBatch(scripted({ 'qstat -j 3': ok(QSTAT_J_WITH_JOB_STATE) }));
    assert.equal(await other.state('3'), 'running', 'a job_state line, where a Grid Engine prints one, is enough');
  });

  it('state of a job qstat no longer holds: its accounting, else the finished list, else unknown', async () => {
    const gone = exit1(QSTAT_J_GONE);
    const calls: string[] = [];
    const finished = new SgeBatch(
      scripted(
        {
          'qstat -j 9': gone,
          'qacct -j 9': ok(QACCT_COMPLETED),
          'qstat -j 8': gone,
          'qacct -j 8': ok(QACCT_FAILED),
          'qstat -j 3': gone,
          'qacct -j 3': ok(QACCT_QDEL_RUNNING),
        },
        calls,
      ),
    );
    assert.equal(await finished.state('9'), 'completed');
    assert.deepEqual(calls, ['qstat -j 9', 'qacct -j 9']);
    assert.equal(await finished.state('8'), 'failed');
    assert.equal(await finished.state('3'), 'cancelled');
    // Job 6 was held and deleted: no accounting record, but listed among the finished jobs.
    const deletedWhileQueued = new SgeBatch(
      scripted({
        'qstat -j 6': gone,
        'qacct -j 6': exit1(QACCT_NONE),
        'qstat -s z -u *': ok(QSTAT_ZOMBIES),
        'qstat -j 99': gone,
        'qacct -j 99': exit1('error: job id 99 not found\n'),
      }),
    );
    assert.equal(await deletedWhileQueued.state('6'), 'cancelled');
    assert.equal(await deletedWhileQueued.state('99'), 'unknown', 'known nowhere: the sweeper judges it after its grace');
    // A site whose submit host cannot run qacct (or read the accounting file).
    const noQacct = new SgeBatch(
      scripted({ 'qstat -j 9': gone, 'qacct -j 9': new MeshError('BATCH_FAILED', 'cannot run qacct: spawn qacct ENOENT'), 'qstat -s z -u *': ok(QSTAT_EMPTY) }),
    );
    assert.equal(await noQacct.state('9'), 'unknown');
    // Still held by the qmaster, no longer listed: ending right now; the accounting may already say how.
    const ending = new SgeBatch(scripted({ 'qstat -j 5': ok(QSTAT_J_QUEUED), 'qstat -u root': ok(QSTAT_EMPTY), 'qacct -j 5': ok(QACCT_COMPLETED) }));
    assert.equal(await ending.state('5'), 'completed');
    const down = new SgeBatch(
      scripted({
        'qstat -j 9': exit1(
          'error: commlib error: got select error (Connection refused)\nunable to send message to qmaster using port 6444 on host "vm": got send error\n',
        ),
      }),
    );
    await assert.rejects(down.state('9'), { code: 'BATCH_FAILED' }, 'a qmaster that does not answer is not a lost job');
    await assert.rejects(finished.state('9; rm -rf /'), { code: 'BAD_INPUT' });
  });

  it('cancels with qdel; a job qdel no longer knows counts as deleted', async () => {
    const calls: string[] = [];
    const sge = new SgeBatch(
      scripted(
        {
          'qdel 3': ok(QDEL_RUNNING),
          'qdel 6': ok(QDEL_HELD),
          'qdel 999': exit1(QDEL_UNKNOWN),
          'qdel 5': exit1('error: commlib error: got select error (Connection refused)\n'),
        },
        calls,
      ),
    );
    await sge.cancel('3');
    await sge.cancel('6');
    await sge.cancel('999');
    await assert.rejects(sge.cancel('5'), { code: 'BATCH_FAILED' });
    assert.deepEqual(calls, ['qdel 3', 'qdel 6', 'qdel 999', 'qdel 5']);
  });

  it('submits with -terse, a legal job name, the logs, /bin/sh, no -V (the environment would show in qstat -j)', async () => {
    const calls: string[] = [];
    const sge = new SgeBatch(scripted({ 'qsub -terse -N mesh-lyon-proc1 -o /l/j.out -e /l/j.err -S /bin/sh -q long /l/j.sh': ok('9\n') }, calls));
    assert.equal(await sge.submit({ name: 'mesh-lyon-proc1', script: '/l/j.sh', stdout: '/l/j.out', stderr: '/l/j.err', options: ['-q', 'long'] }), '9');
    assert.equal(calls.length, 1);
    assert.equal(sge.jobInheritsEnvironment, false, 'credentials must come from a password file');
    assert.equal(sgeJobName('1st job/x'), 'j1st_job_x');
    for (const options of [['-V'], ['-v', 'MESH_KIT_USER,MESH_KIT_PASSWORD'], ['-l', 'h_rt=600', '-v', 'mesh_kit_password=x']]) {
      await assert.rejects(sge.submit({ name: 'j', script: '/l/j.sh', stdout: '/l/j.out', stderr: '/l/j.err', options }), {
        code: 'BAD_INPUT',
        message: /PASSWORD_FILE/,
      });
    }
    assert.equal(calls.length, 1, 'nothing submitted with the environment');
  });
});
