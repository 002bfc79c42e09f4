import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  earlierLocalRuns,
  ensureEarlierLocalRunsGone,
  ensureEarlierRunsGone,
  ensureRunGone,
  groupMembers,
  identifyRun,
  localRunPath,
  remainsOf,
  removeLocalRun,
  writeLocalRun,
} from '../../agents/run-identity.js';
import { StepSupervisor } from '../../agents/step-supervisor.js';
import type { DaqDocument, RunIdentity } from '../../core/document.js';
import { waitFor } from '../support/mesh.js';

// A process group like a step's: a leader that starts a grandchild, both sleeping; the leader
// prints the grandchild's pid.
const FAMILY = `const { spawn } = require('node:child_process');
const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
console.log(c.pid);
setTimeout(() => {}, 60000);`;

const started = new Set<ChildProcess>();

async function family(): Promise<{ leader: ChildProcess; grandchild: number }> {
  const leader = spawn(process.execPath, ['-e', FAMILY], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  started.add(leader);
  const [chunk] = (await once(leader.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  return { leader, grandchild: Number(chunk.toString().trim()) };
}

function procStat(pid: number): { state: string; startTime: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], startTime: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** Runs and is not a zombie (a zombie waits for a parent that may never reap it). */
function runs(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z';
}

describe('run identity: what identifies a step run, and proving it gone (real processes)', () => {
  afterEach(() => {
    for (const child of started) {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    started.clear();
  });

  it('identifies a running process by host, pid, group, /proc start time and boot id', async () => {
    const { leader } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    assert.ok(run, 'a running process is identified');
    assert.equal(run.host, hostname());
    assert.equal(run.pid, pid);
    assert.equal(run.pgid, pid);
    assert.equal(run.start_time, procStat(pid)?.startTime);
    assert.equal(run.boot_id, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    leader.kill('SIGKILL');
    await once(leader, 'exit');
    assert.equal(await identifyRun(pid, pid), undefined, 'a process that is gone has no identity');
  });

  it('kills the leader and the grandchild of an earlier run on this host, and waits until they are gone', async () => {
    const { leader, grandchild } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    assert.deepEqual((await groupMembers(pid)).sort(), [pid, grandchild].sort());
    const result = await ensureRunGone(run);
    assert.deepEqual(result, { gone: true, killed: 2 });
    assert.equal(runs(pid), false, 'the leader is gone');
    assert.equal(runs(grandchild), false, 'the grandchild is gone');
    assert.deepEqual(await remainsOf(run), []);
  });

  it('kills what is left in the group after the leader died (its grandchild re-parented)', async () => {
    const { leader, grandchild } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    leader.kill('SIGKILL');
    await once(leader, 'exit');
    assert.equal(runs(grandchild), true, 'the grandchild outlived its parent');
    assert.deepEqual(await ensureRunGone(run), { gone: true, killed: 1 });
    assert.equal(runs(grandchild), false);
  });

  it('leaves alone a process that only reuses the pid (another start time), one of another boot, one of another host', async () => {
    const { leader } = await family();
    const pid = leader.pid as number;
    const real = (await identifyRun(pid, pid)) as RunIdentity;
    // A group id nobody uses: a process that has exited (its pid not reused this soon).
    const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await once(gone, 'exit');
    const emptyGroup = gone.pid as number;
    const cases: RunIdentity[] = [
      { ...real, pgid: emptyGroup, start_time: real.start_time + 1 },
      { ...real, boot_id: '00000000-0000-0000-0000-000000000000' },
      { ...real, host: `${hostname()}-elsewhere` },
    ];
    for (const run of cases) {
      assert.deepEqual(await ensureRunGone(run), { gone: true, killed: 0 }, JSON.stringify(run));
      assert.equal(runs(pid), true, `${JSON.stringify(run)} must not kill the live process`);
    }
    assert.deepEqual(await ensureRunGone(undefined), { gone: true, killed: 0 }, 'a claim without a run identity has nothing to check');
  });
});

describe('host-local run records: what an agent taking over on this host reads before a renewal put the identity in the document', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-run-record-'));
  });
  afterEach(async () => {
    for (const child of started) {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    started.clear();
    await rm(dir, { recursive: true, force: true });
  });

  it("an earlier attempt's record makes the next attempt kill what that run left (leader dead, grandchild re-parented), then goes", async () => {
    const { leader, grandchild } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    await writeLocalRun(localRunPath(join(dir, 'proc1.1')), { doc: 'run_a/1', step: 'proc1', attempt: 1, run });
    assert.deepEqual(await readdir(dir), ['proc1.1.run'], 'written whole under its name, no temporary file left');
    leader.kill('SIGKILL');
    await once(leader, 'exit');
    assert.equal(runs(grandchild), true, 'the grandchild outlived its leader (else this proves nothing)');
    assert.deepEqual((await earlierLocalRuns(dir, 'run_a/1', 'proc1', 1)).length, 0, 'attempt 1 is not earlier than itself');
    assert.deepEqual(await ensureEarlierLocalRunsGone(dir, 'run_a/1', 'proc1', 2), { gone: true, killed: 1, attempts: [1] });
    assert.equal(runs(grandchild), false, 'the grandchild is gone');
    assert.deepEqual(await readdir(dir), [], 'the record of a run proven gone is removed');
  });

  it('before a claim: the run the record names and the runs recorded on this host for earlier attempts are gone (ensureEarlierRunsGone)', async () => {
    const { leader, grandchild } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    await writeLocalRun(localRunPath(join(dir, 'proc0.1')), { doc: 'run_b', step: 'proc0', attempt: 1, run });
    // The claim of attempt 1, killed before its first renewal: the document names no run.
    const doc = {
      _id: 'run_b',
      type: 'daqdocument',
      status: 'proc0 in progress',
      pending: { proc0: { attempts: 1, agent: 'a', lease_until: '2000-01-01T00:00:00.000Z' } },
    } as unknown as DaqDocument;
    assert.deepEqual(await ensureEarlierRunsGone(dir, doc, 'proc0'), { gone: true, killed: 2 });
    assert.equal(runs(grandchild), false);
    assert.deepEqual(await readdir(dir), []);
  });

  it('ignores records of another document (sanitised log folders may collide), another step, a later attempt, another host, and garbage', async () => {
    const { leader } = await family();
    const pid = leader.pid as number;
    const run = (await identifyRun(pid, pid)) as RunIdentity;
    await writeLocalRun(localRunPath(join(dir, 'proc1.1')), { doc: 'run_a_1', step: 'proc1', attempt: 1, run });
    await writeLocalRun(localRunPath(join(dir, 'proc10.1')), { doc: 'run_a/1', step: 'proc10', attempt: 1, run });
    await writeLocalRun(localRunPath(join(dir, 'proc1.3')), { doc: 'run_a/1', step: 'proc1', attempt: 3, run });
    await writeFile(join(dir, 'proc1.2.run'), '{"doc": "run_a/1", "st');
    assert.deepEqual(await ensureEarlierLocalRunsGone(dir, 'run_a/1', 'proc1', 3), { gone: true, killed: 0, attempts: [] });
    assert.equal(runs(pid), true, 'nothing of another document or step was killed');
    const elsewhere = join(dir, 'other');
    await writeLocalRun(localRunPath(join(dir, 'proc1.1')), { doc: 'run_a/1', step: 'proc1', attempt: 1, run: { ...run, host: `${hostname()}-elsewhere` } });
    assert.deepEqual(
      await ensureEarlierLocalRunsGone(dir, 'run_a/1', 'proc1', 2),
      { gone: true, killed: 0, attempts: [] },
      'a record of another host (a shared log folder) is not acted upon',
    );
    assert.equal(runs(pid), true);
    assert.deepEqual(
      await ensureEarlierLocalRunsGone(elsewhere, 'run_a/1', 'proc1', 2),
      { gone: true, killed: 0, attempts: [] },
      'no folder, nothing recorded',
    );
    await removeLocalRun(localRunPath(join(dir, 'proc1.9')));
  });
});

describe('step supervisor: kills registered groups when its pipe ends, and only then (real processes)', () => {
  it('refuses to start, naming util-linux, when setpriv cannot be run', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.throws(
        () => new StepSupervisor().start(),
        (error: Error & { code?: string }) => error.code === 'PROCESS_FAILED' && /setpriv/.test(error.message) && /util-linux/.test(error.message),
      );
    } finally {
      process.env.PATH = path;
    }
  });

  it('survives SIGTERM, SIGINT and SIGHUP, then on EOF kills every registered group (grandchildren included) but not an unregistered one', async () => {
    const supervisor = new StepSupervisor();
    const kept = await family();
    const done = await family();
    const keptPid = kept.leader.pid as number;
    const donePid = done.leader.pid as number;
    supervisor.register(keptPid);
    supervisor.register(donePid);
    supervisor.unregister(donePid);
    const pid = supervisor.pid as number;
    assert.ok(pid > 0);
    await supervisor.ready();
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.kill(pid, signal);
    // A registration after the signals: killed on EOF only if the supervisor was still there to read it.
    const late = await family();
    const latePid = late.leader.pid as number;
    supervisor.register(latePid);
    assert.equal(runs(pid), true, 'the supervisor ignores SIGTERM, SIGINT and SIGHUP');
    await supervisor.stop();
    assert.equal(runs(pid), false, 'the supervisor exits on EOF');
    await waitFor('the registered groups killed', () => [keptPid, kept.grandchild, latePid, late.grandchild].every((p) => !runs(p)), 1000, 10);
    assert.equal(runs(donePid) && runs(done.grandchild), true, 'an unregistered group is left alone');
    for (const child of [kept, done, late]) process.kill(-(child.leader.pid as number), 'SIGKILL');
  });
});
