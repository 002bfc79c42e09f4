/**
 * Who may write what, and what nobody may rewrite: core/write-rules.ts and the generated
 * validate_doc_update, checked together on every case (same verdict, same message).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import type { UserContext } from '../../core/roles.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { writeProblems } from '../../core/write-rules.js';
import { designDocument, writePolicy } from '../../couchapp/design.js';
import { siteFixture as site } from '../support/records.js';

const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const LEASE = at(30).toISOString();
const pipeline = {
  steps: [
    { name: 'proc0', max_attempts: 2 },
    { name: 'proc1', max_attempts: 2 },
  ],
};
const input = {
  doc_type: 'daqdocument',
  steps: pipeline.steps.map((s, i) => ({ ...s, site: i === 0 ? 'modane' : 'lyon', run: [], out: '', timeout_s: 1, lease_s: 60, executor: 'command' as const })),
  sites: { modane: site('modane', ['proc0']), lyon: site('lyon', ['proc1']), kit: site('kit', []) },
  ingest: { site: 'modane', pattern: '', quiet_s: 1 },
};
const policy = writePolicy(input);
const vdu = new Function(`return (${designDocument(input).validate_doc_update});`)() as (n: unknown, o: unknown, u: unknown, s: unknown) => void;

const PARTY: UserContext = { name: null, roles: ['_admin'] };
const ADMIN: UserContext = { name: 'admin', roles: ['_admin'] };
const COORDINATOR: UserContext = { name: 'coord', roles: ['mesh-coordinator'] };
const OPERATOR: UserContext = { name: 'op', roles: ['mesh-operator'] };
const READER: UserContext = { name: 'reader', roles: ['mesh-reader'] };
const MODANE: UserContext = { name: 'modane-agent', roles: ['mesh-agent:modane'] };
const LYON: UserContext = { name: 'lyon-agent', roles: ['mesh-agent:lyon'] };
const LYON2: UserContext = { name: 'lyon-agent-2', roles: ['mesh-agent:lyon'] };

/** The verdict ('' = accepted), after checking that the server's function says the same. */
function verdict(newDoc: unknown, oldDoc: unknown, user: UserContext): string {
  const mine = writeProblems(newDoc, oldDoc, user, policy).join('; ');
  let server = '';
  try {
    vdu(structuredClone(newDoc), oldDoc === null ? null : structuredClone(oldDoc), structuredClone(user), {});
  } catch (error) {
    server = String((error as { forbidden?: unknown }).forbidden);
  }
  assert.equal(server, mine, 'validate_doc_update and core/write-rules disagree');
  return mine;
}

function step(doc: DaqDocument, event: MeshEvent, minutes: number, user: UserContext): DaqDocument {
  const result = transition(doc, { ...event, user: user.name }, at(minutes), pipeline);
  if (!result.ok) throw result.error;
  return { ...result.doc, _rev: `${doc.history.length + 2}-x` };
}

const fresh: DaqDocument = {
  _id: 'run_lg23b002_000',
  _rev: '1-a',
  type: 'daqdocument',
  run_name: 'lg23b002',
  file_number: 0,
  file: '/data/lg23b002_000',
  size_in_bytes: 5,
  checksum: { sha256: 'a'.repeat(64) },
  date_closed: at(0).toISOString(),
  status: 'closed',
  history: [{ at: at(0).toISOString(), from: null, to: 'closed', by: 'modane/ingest', user: 'modane-agent' }],
};
const claimProc0: MeshEvent = { type: 'claim', step: 'proc0', mode: 'run', site: 'modane', agent: 'm1', host: 'daq', lease_until: LEASE };
const proc0Running = step(fresh, claimProc0, 1, MODANE);
const good = step(
  proc0Running,
  { type: 'succeed', step: 'proc0', agent: 'm1', result: { exit_code: 0, duration_s: 1, file: '/sps/raw/lg23b002_000', checksum: { sha256: 'a'.repeat(64) } } },
  2,
  MODANE,
);
const claimProc1: MeshEvent = { type: 'claim', step: 'proc1', mode: 'run', site: 'lyon', agent: 'l1', host: 'farm', lease_until: LEASE };
const proc1Running = step(good, claimProc1, 3, LYON);

describe('write rules: roles against what a write does', () => {
  it("lets each site's agent do its own steps, and only those", () => {
    assert.equal(verdict(fresh, null, MODANE), '');
    assert.equal(verdict(proc0Running, fresh, MODANE), '');
    assert.equal(verdict(good, proc0Running, MODANE), '');
    assert.equal(verdict(proc1Running, good, LYON), '');
    assert.match(verdict(step(fresh, claimProc0, 1, LYON), fresh, LYON), /"lyon-agent" may not run proc0/);
    assert.match(verdict(step(good, { ...claimProc1, site: 'modane' }, 3, LYON), good, LYON), /pending\.proc1\.site is "modane"/);
    assert.match(verdict(step(good, claimProc1, 3, LYON), good, MODANE), /history entry of account "lyon-agent" written by "modane-agent"/);
    assert.match(verdict(fresh, null, LYON), /may not catalogue files/);
  });

  it("a claim names the writer's account; only that account renews it and records its success", () => {
    const renewed = step(proc1Running, { type: 'renew', step: 'proc1', agent: 'l1', lease_until: at(40).toISOString() }, 4, LYON);
    assert.equal(verdict(renewed, proc1Running, LYON), '');
    assert.match(verdict(renewed, proc1Running, LYON2), /pending\.proc1\.account is "lyon-agent" but the writer is "lyon-agent-2"/);
    const done = step(proc1Running, { type: 'succeed', step: 'proc1', agent: 'l1', result: { exit_code: 0, duration_s: 1 } }, 5, LYON);
    assert.equal(verdict(done, proc1Running, LYON), '');
    const stolen = { ...done, history: [...proc1Running.history, { ...done.history[done.history.length - 1], user: 'lyon-agent-2' }] };
    assert.match(verdict(stolen, proc1Running, LYON2), /proc1 may be recorded done only by the account that claimed it/);
    const forgedClaim = { ...proc1Running, pending: { proc1: { ...(stepRecord(proc1Running, 'proc1') as StepRecord), account: 'ghost' } } };
    assert.match(verdict(forgedClaim, good, LYON), /pending\.proc1\.account is "ghost"/);
  });

  it('another agent of the site may expire a lapsed claim and claim it again', () => {
    const expired = step(proc1Running, { type: 'expire', step: 'proc1', by: 'lyon/l2' }, 45, LYON2);
    assert.equal(verdict(expired, proc1Running, LYON2), '');
    assert.equal(verdict(step(expired, { ...claimProc1, agent: 'l2' }, 46, LYON2), expired, LYON2), '');
  });

  it('operators (and admins) retry and mark bad; agents do not retry; readers write nothing', () => {
    let failed = proc1Running;
    for (let i = 0; i < 2; i++) {
      failed = step(
        failed,
        {
          type: 'fail',
          step: 'proc1',
          agent: (stepRecord(failed, 'proc1')?.agent as string | undefined) ?? 'l1',
          reason: 'exit 1',
          retry_after: at(0).toISOString(),
        },
        10 + i * 2,
        LYON,
      );
      if (failed.status === 'good') failed = step(failed, claimProc1, 11 + i * 2, LYON);
    }
    assert.equal(failed.status, 'proc1 failed');
    for (const user of [OPERATOR, ADMIN])
      assert.equal(verdict(step(failed, { type: 'retry', step: 'proc1', by: `operator/${user.name}` }, 20, user), failed, user), '');
    assert.match(
      verdict(step(failed, { type: 'retry', step: 'proc1', by: 'lyon/l1' }, 20, LYON), failed, LYON),
      /"lyon-agent" may not retry proc1: operators do/,
    );
    assert.equal(verdict(step(failed, { type: 'mark_bad', by: 'operator/op', reason: 'broken' }, 20, OPERATOR), failed, OPERATOR), '');
    assert.match(verdict(step(failed, { type: 'retry', step: 'proc1', by: 'x' }, 20, READER), failed, READER), /"reader" may not write/);
    assert.match(verdict({ _id: 'mesh-agent:lyon:r', type: 'mesh-agent', site: 'lyon' }, null, READER), /"reader" may not write the heartbeat/);
  });

  it('an admin is held to the rules: it may not claim or record a step', () => {
    assert.match(verdict(step(good, { ...claimProc1, agent: 'admin' }, 3, ADMIN), good, ADMIN), /"admin" may not run proc1/);
    assert.match(verdict(step(fresh, claimProc0, 1, ADMIN), fresh, ADMIN), /"admin" may not run proc0/);
  });

  it("control documents: heartbeats by their site's agents, the rest by the coordinator", () => {
    const beat = { _id: 'mesh-agent:lyon:l1', type: 'mesh-agent', site: 'lyon', agent: 'l1' };
    assert.equal(verdict(beat, null, LYON), '');
    assert.match(verdict({ ...beat, site: 'modane' }, null, LYON), /may not write the heartbeat of site "modane"/);
    const assignment = { _id: 'mesh:assignment', type: 'mesh-assignment', steps: {} };
    assert.equal(verdict(assignment, null, COORDINATOR), '');
    assert.equal(verdict(assignment, null, ADMIN), '');
    assert.match(verdict(assignment, null, LYON), /may not write "mesh-assignment" documents: the coordinator does/);
  });

  it('trigger records: by an agent of the triggering site (its `site`), which never changes', () => {
    const record = { _id: 'mesh-trigger:modane:lyon', type: 'mesh-trigger', site: 'modane', target: 'lyon', last: { ok: false } };
    assert.equal(verdict(record, null, MODANE), '');
    assert.equal(verdict({ ...record, runs: 2 }, record, MODANE), '');
    // The triggered site cannot clear its own failures, nor write one in another site's name.
    assert.match(verdict({ ...record, last: { ok: true } }, record, LYON), /"lyon-agent" may not write the trigger record of site "modane"/);
    assert.match(verdict({ ...record, site: 'lyon' }, record, LYON), /may not write the trigger record of site "lyon"/);
    assert.match(verdict(record, null, READER), /"reader" may not write the trigger record of site "modane"/);
    assert.equal(verdict(record, null, COORDINATOR), '');
  });

  it('deletion is reserved to the coordinator and operators', () => {
    const tombstone = { _id: good._id, _rev: good._rev, _deleted: true };
    for (const user of [COORDINATOR, OPERATOR, ADMIN, PARTY]) assert.equal(verdict(tombstone, good, user), '');
    for (const user of [LYON, READER]) assert.match(verdict(tombstone, good, user), /may not delete documents/);
  });
});

describe('write rules: provenance nobody rewrites (admins and the admin party included)', () => {
  const everyone = [PARTY, ADMIN, COORDINATOR, OPERATOR, MODANE, LYON];
  const refusedForAll = (newDoc: unknown, oldDoc: unknown, pattern: RegExp) => {
    for (const user of everyone) assert.match(verdict(newDoc, oldDoc, user), pattern, JSON.stringify(user));
  };

  it('closed → good with a fabricated proc0 and no history entry', () => {
    refusedForAll(
      { ...fresh, status: 'good', proc0: { ok: true, attempts: 1, file: '/etc/passwd' } },
      fresh,
      /status changed from "closed" to "good" without a history entry/,
    );
  });

  it('good → proc1 in progress with a made-up claim', () => {
    const forged = { ...good, status: 'proc1 in progress', pending: { proc1: { attempts: 1, agent: 'ghost', site: 'lyon', lease_until: LEASE } } };
    refusedForAll(forged, good, /without a history entry/);
    const withEntry = {
      ...forged,
      history: [...good.history, { at: at(3).toISOString(), from: 'good', to: 'proc1 in progress', by: 'lyon/ghost', user: 'admin' }],
    };
    assert.match(verdict(withEntry, good, ADMIN), /"admin" may not run proc1/);
  });

  it('rewriting an ok record, lowering attempts', () => {
    refusedForAll({ ...good, proc0: { ...(good.proc0 as StepRecord), file: '/elsewhere' } }, good, /proc0 is done and cannot change/);
    refusedForAll({ ...good, proc0: { ...(good.proc0 as StepRecord), checksum: { sha256: 'b'.repeat(64) } } }, good, /proc0 is done and cannot change/);
    refusedForAll(
      { ...proc1Running, pending: { proc1: { ...(stepRecord(proc1Running, 'proc1') as StepRecord), attempts: 0 } } },
      proc1Running,
      /proc1\.attempts cannot go down from 1 to 0/,
    );
    refusedForAll({ ...good, file: '/other' }, good, /file cannot change once catalogued/);
  });

  it("a pending record leaves pending only as its step's success; a top-level record is never a failure", () => {
    const failedOnce = step(proc1Running, { type: 'fail', step: 'proc1', agent: 'l1', reason: 'exit 1', retry_after: at(0).toISOString() }, 6, LYON);
    assert.equal(failedOnce.status, 'good');
    const { pending: _p, ...forgotten } = failedOnce;
    refusedForAll(forgotten, failedOnce, /pending\.proc1 cannot be removed before proc1 is done/);
    refusedForAll(
      { ...forgotten, proc1: { ...(stepRecord(failedOnce, 'proc1') as StepRecord) } },
      failedOnce,
      /proc1\.ok is false: a step record at the top level is a success/,
    );
    const { proc0: _done, ...undone } = good;
    refusedForAll({ ...undone, status: 'good' }, good, /proc0 cannot be removed/);
  });

  it('batchJob[] is append-only, and only agents add to it', () => {
    const job = { number: 7, script: '/l/j.sh', stdout: '/l/j.out', stderr: '/l/j.err', command: 'mesh run-batch', type: 'slurm', date: at(3).toISOString() };
    const listed = { ...good, batchJob: [job] };
    assert.equal(verdict({ ...listed, batchJob: [job, { ...job, number: 8 }] }, listed, COORDINATOR), '', 'replication carries it');
    assert.match(verdict({ ...listed, batchJob: [job, { ...job, number: 8 }] }, listed, OPERATOR), /"op" may not record batch jobs: agents do/);
    refusedForAll({ ...listed, batchJob: [] }, listed, /batchJob entries cannot be removed/);
    refusedForAll({ ...listed, batchJob: [{ ...job, number: 9 }] }, listed, /batchJob entry 0 cannot change/);
  });

  it('deleting, emptying or rewriting history', () => {
    const { history: _h, ...noHistory } = good;
    refusedForAll(noHistory, good, /history cannot be removed/);
    refusedForAll({ ...good, history: [] }, good, /history entries cannot be removed/);
    refusedForAll({ ...good, history: [{ ...good.history[0], by: 'someone/else' }, ...good.history.slice(1)] }, good, /history entry 0 cannot change/);
  });

  it('a document deleted then recreated without _rev is held to the rules of a new one', () => {
    const forged = { ...good, _rev: undefined, history: [] };
    refusedForAll(forged, null, /status changed from null to "good" without a history entry/);
    for (const user of [ADMIN, OPERATOR, MODANE])
      assert.match(verdict({ ...good, _rev: undefined }, null, user), /a new document starts closed, with no step record/);
  });

  it('a branch with no common ancestor (new_edits=false) that changes type or un-oks a record', () => {
    for (const user of [ADMIN, OPERATOR, LYON]) {
      assert.match(verdict({ ...good, type: 'something' }, null, user), /may not write documents other than "daqdocument"/);
      assert.match(verdict({ ...fresh, status: 'proc0 failed', pending: { proc0: { attempts: 1, ok: false } } }, null, user), /a new document starts closed/);
    }
  });

  it('duplicates[] is append-only; bad is terminal', () => {
    const merged = { ...good, duplicates: [{ step: 'proc0', site: 'kit', rev: '3-b' }] };
    assert.equal(verdict(merged, good, COORDINATOR), '');
    refusedForAll({ ...merged, duplicates: [] }, merged, /duplicates entries cannot be removed/);
    const bad = step(good, { type: 'mark_bad', by: 'operator/op', reason: 'x' }, 4, OPERATOR);
    refusedForAll(
      { ...bad, status: 'good', history: [...bad.history, { at: at(5).toISOString(), from: 'bad', to: 'good', by: 'operator/op', user: 'op' }] },
      bad,
      /status cannot go from "bad" to "good"/,
    );
  });
});
