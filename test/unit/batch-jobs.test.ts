import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { jobScript, shellQuote } from '../../agents/batch/job-file.js';
import { UNKNOWN_GRACE_MS, UNSUBMITTED_GRACE_MS, lostReason } from '../../agents/batch/lost-jobs.js';
import { type DaqDocument, stepRecord } from '../../core/document.js';
import { transition } from '../../core/state.js';
import { testFolder } from '../support/folders.js';

const now = new Date('2026-11-27T12:00:00.000Z');
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
const pipeline = { steps: [{ name: 'proc1', max_attempts: 3 }] };

describe('batch jobs', () => {
  it('decides which jobs are lost', () => {
    const job = { system: 'slurm', id: '7', stdout: '/o', submitted: ago(5 * 60_000) };
    assert.equal(lostReason('queued', job, 'pending', now), undefined);
    assert.equal(lostReason('in_progress', job, 'running', now), undefined);
    assert.equal(lostReason('queued', job, 'cancelled', now), 'batch job 7 was cancelled');
    assert.equal(lostReason('in_progress', job, 'failed', now), 'batch job 7 failed');
    assert.equal(lostReason('queued', job, 'stuck', now), 'batch job 7 is in an error state and will not start');
    assert.equal(lostReason('in_progress', job, 'completed', now), 'batch job 7 ended without recording a result');
    assert.equal(lostReason('queued', job, 'unknown', now), 'batch job 7 is unknown to slurm');
    assert.equal(
      lostReason('queued', { ...job, submitted: ago(UNKNOWN_GRACE_MS / 2) }, 'unknown', now),
      undefined,
      'a job just submitted may not be listed yet',
    );
    const noId = { system: 'slurm', stdout: '/o', submitted: ago(UNSUBMITTED_GRACE_MS + 1) };
    assert.match(lostReason('queued', noId, undefined, now) ?? '', /no batch job id/);
    assert.equal(lostReason('queued', { ...noId, submitted: ago(1000) }, undefined, now), undefined, 'the submitter may be between claim and sbatch');
    assert.equal(lostReason('in_progress', noId, undefined, now), undefined, 'a started job renews its lease');
    // Found by the fault harness: a lyon agent killed between its claims and sbatch held them 10 minutes.
    assert.match(
      lostReason('queued', { ...noId, submitted: ago(3 * 60_000) }, undefined, now) ?? '',
      /no batch job id/,
      'an unsubmitted claim is given back within minutes',
    );
  });

  it('records a job id only on the claim of that job, without a history entry', () => {
    const base: DaqDocument = {
      _id: 'd',
      _rev: '2-a',
      type: 'daqdocument',
      run_name: 'r',
      file_number: 0,
      file: '/f',
      size_in_bytes: 0,
      date_closed: ago(0),
      status: 'proc1 queued',
      history: [],
    };
    const doc: DaqDocument = {
      ...base,
      pending: {
        proc1: { attempts: 1, site: 'lyon', agent: 'a', lease_until: ago(-60_000), batch: { system: 'slurm', stdout: '/logs/j1.out', submitted: ago(0) } },
      },
    };
    const ok = transition(
      doc,
      { type: 'submitted', step: 'proc1', batch: { system: 'slurm', id: '42', stdout: '/logs/j1.out' }, script: '/logs/job.sh', command: 'mesh run-batch' },
      now,
      pipeline,
    );
    assert.ok(ok.ok);
    assert.equal(stepRecord(ok.doc, 'proc1')?.batch?.id, '42');
    assert.deepEqual(
      ok.doc.batchJob,
      [{ number: 42, script: '/logs/job.sh', stdout: '/logs/j1.out', stderr: '', command: 'mesh run-batch', type: 'slurm', date: now.toISOString() }],
      "the original scripts' batchJob list gains the submission",
    );
    assert.equal(ok.doc.history.length, 0);
    const other = transition(
      doc,
      { type: 'submitted', step: 'proc1', batch: { system: 'slurm', id: '43', stdout: '/logs/j2.out' }, script: '/logs/job.sh', command: 'mesh run-batch' },
      now,
      pipeline,
    );
    assert.ok(!other.ok);
    const again = transition(
      ok.doc,
      { type: 'submitted', step: 'proc1', batch: { system: 'slurm', id: '44', stdout: '/logs/j1.out' }, script: '/logs/job.sh', command: 'mesh run-batch' },
      now,
      pipeline,
    );
    assert.ok(!again.ok, 'an id is never replaced');
  });

  it('writes job scripts whose words reach the program unchanged', () => {
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
    const dir = testFolder('mesh-script-');
    const words = ['/usr/bin/printf', '%s\\n', "a'b", '$(touch /tmp/pwned)', '`id`', 'two words', '*', ''];
    const script = join(dir, 'job.sh');
    writeFileSync(script, jobScript(words));
    chmodSync(script, 0o700);
    const out = execFileSync(script, { encoding: 'utf8' });
    assert.deepEqual(out.split('\n').slice(0, -1), words.slice(2));
  });
});
