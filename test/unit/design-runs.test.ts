/**
 * Run documents on the server (core/run-rules.ts and its ES5 port): the generated
 * validate_doc_update and the TypeScript rules agree, message for message, on every write the
 * ingest and the run agents make and on forgeries; and they refuse what they must.
 */
import assert from 'node:assert/strict';
import { parse } from 'acorn';
import { describe, it } from 'mocha';
import type { DaqDocument } from '../../core/document.js';
import { type RunDocument, type RunMember, asStateDocument, newRunDocument, withMember } from '../../core/run-document.js';
import type { UserContext } from '../../core/roles.js';
import { type MeshEvent, transition } from '../../core/state.js';
import { writeProblems } from '../../core/write-rules.js';
import { designDocument, writePolicy } from '../../couchapp/design.js';
import { parseMeshConfig } from '../../config/load.js';
import { siteFixture as site } from '../support/records.js';

type Validate = (newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj: unknown) => void;

const fileStep = (name: string, at: string) => ({
  name,
  site: at,
  run: ['x'],
  out: '/o/{doc_id}',
  timeout_s: 1,
  max_attempts: 2,
  lease_s: 60,
  executor: 'command' as const,
});
const runStep = { ...fileStep('archive', 'lyon'), out: '/a/{run_name}.tar', scope: 'run' as const, after: 'proc1', custody: true };
const input = {
  doc_type: 'daqdocument',
  steps: [fileStep('proc0', 'modane'), fileStep('proc1', 'lyon')],
  run_steps: [runStep],
  sites: { modane: site('modane', ['proc0']), lyon: site('lyon', ['proc1', 'archive']), kit: site('kit', ['proc1']) },
  ingest: { site: 'modane', pattern: '', quiet_s: 1 },
};
const policy = writePolicy(input);
const design = designDocument(input);
const vdu = new Function(`return (${design.validate_doc_update});`)() as Validate;
const pipeline = { steps: input.run_steps };

const ADMIN_PARTY: UserContext = { name: null, roles: ['_admin'] };
const INGEST: UserContext = { name: 'modane-agent', roles: ['mesh-agent:modane'] };
const LYON: UserContext = { name: 'lyon-agent', roles: ['mesh-agent:lyon'] };
const USERS: UserContext[] = [
  ADMIN_PARTY,
  { name: 'coordinator', roles: ['mesh-coordinator'] },
  { name: 'admin', roles: ['_admin'] },
  LYON,
  INGEST,
  { name: 'kit-agent', roles: ['mesh-agent:kit'] },
  { name: 'op', roles: ['mesh-operator'] },
  { name: 'nobody', roles: [] },
];

function server(newDoc: unknown, oldDoc: unknown, user: UserContext): string {
  try {
    vdu(structuredClone(newDoc), oldDoc === null ? null : structuredClone(oldDoc), structuredClone(user), {});
    return '';
  } catch (error) {
    const forbidden = (error as { forbidden?: unknown }).forbidden;
    if (typeof forbidden !== 'string') throw error;
    return forbidden;
  }
}

const agent = (newDoc: unknown, oldDoc: unknown, user: UserContext) => writeProblems(newDoc, oldDoc, user, policy).join('; ');

function agreeAll(pairs: Array<[unknown, unknown]>): void {
  for (const [oldDoc, newDoc] of pairs) {
    for (const user of USERS) {
      const a = agent(newDoc, oldDoc, user);
      const s = server(newDoc, oldDoc, user);
      if (a !== s) assert.equal(s, a, `user ${JSON.stringify(user)}\nold ${JSON.stringify(oldDoc)}\nnew ${JSON.stringify(newDoc)}`);
    }
  }
}

const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const member = (n: number): RunMember => ({ doc_id: `run_lg23b002_00${n}`, file: `/daq/lg23b002_00${n}`, size_in_bytes: 10, sha256: 'a'.repeat(64) });

/** The run document's life as the ingest and a lyon agent write it: pairs [before, after] with the writer. */
function life(): Array<{ old: RunDocument | null; doc: RunDocument; user: UserContext }> {
  const steps: Array<{ old: RunDocument | null; doc: RunDocument; user: UserContext }> = [];
  let doc = newRunDocument('lg23b002', member(0), at(0).toISOString(), 'modane/ingest', INGEST.name);
  steps.push({ old: null, doc, user: INGEST });
  for (const n of [1, 2]) {
    const next = withMember(doc, member(n), ['archive'], at(n).toISOString()).doc;
    steps.push({ old: doc, doc: next, user: INGEST });
    doc = next;
  }
  const closed = { ...doc, closed_at: at(5).toISOString(), closed_by: 'quiet' as const };
  steps.push({ old: doc, doc: closed, user: INGEST });
  doc = closed;
  const apply = (event: MeshEvent, now: Date, user: UserContext) => {
    const next = transition(asStateDocument(doc), { ...event, user: user.name }, now, pipeline);
    assert.ok(next.ok, next.ok ? '' : next.error.message);
    const written = next.doc as unknown as RunDocument;
    steps.push({ old: doc, doc: written, user });
    doc = written;
  };
  const claim = { type: 'claim', step: 'archive', mode: 'run', site: 'lyon', agent: 'a1', host: 'h', lease_until: at(70).toISOString() } as const;
  apply(claim, at(10), LYON);
  apply({ type: 'renew', step: 'archive', agent: 'a1', lease_until: at(90).toISOString() }, at(30), LYON);
  apply({ type: 'fail', step: 'archive', agent: 'a1', reason: 'tar failed', retry_after: at(40).toISOString() }, at(35), LYON);
  const late = withMember(doc, member(3), ['archive'], at(36).toISOString());
  assert.equal(late.late, true);
  steps.push({ old: doc, doc: late.doc, user: INGEST });
  doc = late.doc;
  apply(claim, at(50), LYON);
  apply({ type: 'succeed', step: 'archive', agent: 'a1', result: { exit_code: 0, duration_s: 1 } }, at(55), LYON);
  const custody = {
    site: 'lyon',
    step: 'archive',
    file: '/a/lg23b002.tar',
    sha256: 'b'.repeat(64),
    size_in_bytes: 30,
    verified_at: at(55).toISOString(),
    account: 'lyon-agent',
    members: [],
  };
  steps.push({ old: doc, doc: { ...doc, custody: [custody] }, user: LYON });
  return steps;
}

describe('run documents on the server', () => {
  it('generates ES5 only, and the design carries the run_docs view', () => {
    assert.doesNotThrow(() => parse(`(${design.validate_doc_update})`, { ecmaVersion: 5 }));
    assert.doesNotThrow(() => parse(`(${design.views.run_docs.map})`, { ecmaVersion: 5 }));
  });

  it('accepts every write of the ingest and the run agent, and both sides agree for every writer', () => {
    const writes = life();
    for (const { old, doc, user } of writes) {
      assert.equal(agent(doc, old, user), '', `${JSON.stringify(user)} ${doc.status}`);
      assert.equal(server(doc, old, user), '');
    }
    agreeAll(writes.map(({ old, doc }) => [old, doc]));
  });

  it('refuses forgeries, with the same messages on both sides', () => {
    const writes = life();
    const closed = writes[3].doc;
    const started = writes[4].doc;
    const done = writes[writes.length - 2].doc;
    const forged: Array<[RunDocument | null, unknown, UserContext, RegExp]> = [
      [closed, { ...closed, members: closed.members.slice(1) }, INGEST, /members entries cannot be removed/],
      [closed, { ...closed, members: [{ ...closed.members[0], sha256: 'c'.repeat(64) }, ...closed.members.slice(1)] }, INGEST, /members entry 0 cannot change/],
      [
        closed,
        { ...closed, members: [...closed.members, member(7)] },
        LYON,
        /may not write members, last_member_at of a run document: the ingest site does|may not write members of a run document/,
      ],
      [started, { ...started, members: [...started.members, member(7)] }, INGEST, /members cannot grow once a run step started/],
      [closed, { ...closed, closed_at: at(99).toISOString() }, INGEST, /closed_at cannot change once written/],
      [writes[2].doc, { ...writes[2].doc, closed_at: at(9).toISOString(), closed_by: 'quiet' }, LYON, /may not write closed_at, closed_by/],
      [writes[2].doc, { ...writes[2].doc, closed_at: 'yesterday', closed_by: 'soon' }, INGEST, /closed_at is "yesterday".*closed_by is "soon"/],
      [null, { ...writes[0].doc, history: [{ ...writes[0].doc.history[0], by: 'lyon/ingest', user: 'lyon-agent' }] }, LYON, /may not catalogue files/],
      [null, { ...writes[0].doc, _id: 'runinfo_other' }, INGEST, /_id is "runinfo_" and its run_name/],
      [null, { ...writes[0].doc, members: [{ doc_id: 'x' }] }, INGEST, /members entry 0 is/],
      [
        closed,
        {
          ...started,
          history: started.history.map((h, i) => (i === started.history.length - 1 ? { ...h, by: 'modane/x', user: 'modane-agent' } : h)),
          pending: { archive: { ...started.pending?.archive, site: 'modane', account: 'modane-agent' } },
        },
        INGEST,
        /may not run archive/,
      ],
      [done, { ...done, archive: { ...(done.archive as object), exit_code: 1 } }, LYON, /archive is done and cannot change/],
      [done, { ...done, custody: [{ site: 'kit', account: 'lyon-agent' }] }, LYON, /custody entry 0 must name the writer's site/],
    ];
    for (const [old, doc, user, why] of forged) {
      const verdict = agent(doc, old, user);
      assert.match(verdict, why, JSON.stringify(doc).slice(0, 300));
      assert.equal(server(doc, old, user), verdict);
    }
    agreeAll(forged.map(([old, doc]) => [old, doc]));
  });

  it('leaves run documents foreign when no run step is configured', () => {
    const plain = designDocument({ ...input, run_steps: [] });
    const check = new Function(`return (${plain.validate_doc_update});`)() as Validate;
    const doc = life()[0].doc;
    assert.throws(() => check(doc, null, INGEST, {}), { forbidden: /may not write documents other than "daqdocument"/ });
    assert.equal(
      writeProblems(doc, null, INGEST, writePolicy({ ...input, run_steps: [] })).join('; '),
      '"modane-agent" may not write documents other than "daqdocument" and mesh control documents',
    );
  });

  it('a file document is judged as before: run steps are not part of its pipeline', () => {
    const file: DaqDocument = {
      _id: 'run_lg23b002_000',
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: 0,
      file: '/daq/lg23b002_000',
      size_in_bytes: 1,
      date_closed: at(0).toISOString(),
      status: 'archive in progress',
      history: [{ at: at(0).toISOString(), from: null, to: 'closed', by: 'modane/ingest', user: 'modane-agent' }],
    };
    assert.match(agent(file, null, INGEST), /status "archive in progress" is unknown/);
    assert.equal(server(file, null, INGEST), agent(file, null, INGEST));
  });
});

describe('run steps in the config', () => {
  const base = {
    sites: { modane: { server: 'http://127.0.0.1:1', reachable: false, long_running: true, log_dir: '/tmp/l' } },
    ingest: { site: 'modane' },
  };
  const proc0 = { name: 'proc0', site: 'modane', run: ['cp', '{file}', '{out}'], out: '/o/{doc_id}' };
  const archive = {
    name: 'archive',
    site: 'modane',
    scope: 'run',
    after: 'proc0',
    run: ['tar', '-cf', '{out}', '-T', '{members_file}'],
    out: '/a/{run_name}.tar',
  };
  const load = (steps: unknown[], extra: object = {}) => parseMeshConfig({ ...base, ...extra, steps }, 'test.json');
  const refused = (steps: unknown[], why: RegExp, extra: object = {}) =>
    assert.throws(
      () => load(steps, extra),
      (e: Error) => why.test(e.message),
    );

  it('puts run steps in run_steps, never in the file pipeline', () => {
    const config = load([proc0, archive], { ingest: { site: 'modane', run_quiet_s: 30 } });
    assert.deepEqual(
      config.steps.map((s) => s.name),
      ['proc0'],
    );
    assert.deepEqual(
      config.run_steps?.map((s) => [s.name, s.scope, s.after]),
      [['archive', 'run', 'proc0']],
    );
    assert.equal(config.ingest.run_quiet_s, 30);
  });

  it('refuses bad run steps with clear messages', () => {
    refused(
      [proc0, { ...archive, after: undefined }],
      /steps\[1\]\.after is missing, expected the file-scope step every file of the run must have done first \(one of proc0\)/,
    );
    refused(
      [proc0, { ...archive, after: 'archive' }],
      /steps\[1\]\.after is "archive", expected a file-scope step \(one of proc0\): archive is a run step, and a run step is not part of the file pipeline/,
    );
    refused(
      [proc0, { ...archive, run: ['tar', '{file}'] }],
      /steps\[1\]\.run\[1\] is "\{file\}", expected an argument template; here: unknown placeholder \{file\} \(a run step has \{run_name\}, \{members_file\}, \{out\}, \{step\}\)/,
    );
    refused([proc0, { ...archive, out: '/a/archive.tar' }], /steps\[1\]\.out .*no \{run_name\}/);
    refused([proc0, { ...archive, executor: 'sftp' }], /steps\[1\]\.executor is "sftp"/);
    refused([{ ...proc0, after: 'x' }], /steps\[0\]\.after is "x", expected nothing: after belongs to a run step/);
    refused([{ ...proc0, scope: 'files' }], /steps\[0\]\.scope is "files"/);
    refused([archive], /at least one file-scope step/);
    refused([proc0, { ...archive, name: 'proc0' }], /steps\[1\]\.name is "proc0", expected a name no other step has/);
    refused([proc0, archive], /ingest\.run_quiet_s is "soon"/, { ingest: { site: 'modane', run_quiet_s: 'soon' } });
  });
});
