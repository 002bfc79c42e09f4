import assert from 'node:assert/strict';
import { parse } from 'acorn';
import { describe, it } from 'mocha';
import { type DaqDocument, isDone } from '../../core/document.js';
import { allStatuses } from '../../core/invariants.js';
import type { UserContext } from '../../core/roles.js';
import { writeProblems } from '../../core/write-rules.js';
import { applyControl, noControls } from '../../core/operator-controls.js';
import { readyFor, transition } from '../../core/state.js';
import { ORIGINAL_VIEWS, inProgressView } from '../../config/step-names.js';
import { FIXED_VIEWS, designDocument } from '../../couchapp/design.js';
import { ADMIN_PARTY, COORDINATOR, DOC_TYPE, PIPELINE, POLICY, STEP_NAMES, collapsedPairs, freshDoc, prng, reachable } from '../support/generated-docs.js';
import { siteFixture as site } from '../support/records.js';

type Emitted = Array<[unknown, unknown]>;
type Validate = (newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj: unknown) => void;

const steps = PIPELINE.steps.map((s) => ({ ...s, site: 'lyon', run: [], out: '', timeout_s: 1, lease_s: 60, executor: 'command' as const }));
const sites = { modane: site('modane', []), lyon: site('lyon', STEP_NAMES), kit: site('kit', STEP_NAMES) };
const input = { doc_type: DOC_TYPE, steps, sites, ingest: { site: 'modane', pattern: '', quiet_s: 1 } };
const design = designDocument(input);
const vdu = new Function(`return (${design.validate_doc_update});`)() as Validate;

/**
 * The VDU's verdict as a problem string: '' when it accepts. CouchDB hands each call its own
 * copies; `copies` lets a caller reuse one copy of the documents for several users (agree below
 * checks afterwards that no call changed them).
 */
function serverVerdict(newDoc: unknown, oldDoc: unknown, user: UserContext = ADMIN_PARTY, copies?: { newDoc: unknown; oldDoc: unknown }): string {
  try {
    const given = copies ?? { newDoc: structuredClone(newDoc), oldDoc: oldDoc === null ? null : structuredClone(oldDoc) };
    vdu(given.newDoc, given.oldDoc, structuredClone(user), {});
    return '';
  } catch (error) {
    const forbidden = (error as { forbidden?: unknown }).forbidden;
    if (typeof forbidden !== 'string') throw error;
    return forbidden;
  }
}

function agentVerdict(newDoc: unknown, oldDoc: unknown, user: UserContext = ADMIN_PARTY): string {
  return writeProblems(newDoc, oldDoc, user, POLICY).join('; ');
}

/** Writers of every kind, for the agreement checks. */
const USERS: UserContext[] = [
  ADMIN_PARTY,
  COORDINATOR,
  { name: 'admin', roles: ['_admin'] },
  { name: 'lyon-agent', roles: ['mesh-agent:lyon'] },
  { name: 'modane-agent', roles: ['mesh-agent:modane'] },
  { name: 'op', roles: ['mesh-operator'] },
  { name: 'reader', roles: ['mesh-reader'] },
  { name: 'nobody', roles: [] },
];

function runMap(name: string, doc: unknown): Emitted {
  const emitted: Emitted = [];
  const map = new Function('emit', `return (${design.views[name].map});`)((key: unknown, value: unknown) => emitted.push([key, value])) as (
    doc: unknown,
  ) => void;
  map(structuredClone(doc));
  return emitted;
}

const r = reachable();
const ok = { attempts: 1, ok: true };
const good = (extra: Record<string, unknown> = {}): DaqDocument => ({ ...freshDoc(), status: 'good', proc0: ok, ...extra });

describe('couchapp/design', () => {
  it('generates ES5 only (SpiderMonkey 1.8.5)', () => {
    const sources = [design.validate_doc_update, ...Object.values(design.views).map((v) => v.map)];
    for (const source of sources) {
      assert.doesNotThrow(() => parse(`(${source})`, { ecmaVersion: 5 }), source.slice(0, 200));
      assert.doesNotMatch(
        source,
        /\.(includes|startsWith|endsWith|find|findIndex|padStart|repeat)\(|Number\.isInteger|Object\.(assign|entries|values)|Array\.from|\bnew (Map|Set)\b/,
      );
    }
  });

  it('is deterministic and records a hash of its inputs', () => {
    assert.deepEqual(designDocument(input), design);
    assert.match(design.mesh.generated_from, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(designDocument({ ...input, doc_type: 'other' }).mesh.generated_from, design.mesh.generated_from);
    assert.notEqual(designDocument({ ...input, ingest: { ...input.ingest, site: 'lyon' } }).mesh.generated_from, design.mesh.generated_from);
  });

  it('refuses step names that clash with a view or cannot be a field', () => {
    for (const name of [FIXED_VIEWS[0], '_secret', 'a b']) {
      assert.throws(() => designDocument({ doc_type: DOC_TYPE, steps: [{ ...steps[0], name }] }), { code: 'CONFIG_INVALID' });
    }
    assert.throws(() => designDocument({ doc_type: DOC_TYPE, steps: [] }), { code: 'CONFIG_INVALID' });
  });

  describe('validate_doc_update agrees with core/invariants', () => {
    /** TS and ES5 agree for every kind of writer; `expect` is checked for the admin party and the coordinator. */
    function agree(pairs: Iterable<[unknown, unknown]>, expect?: 'accept' | 'reject', users: UserContext[] = USERS): number {
      let n = 0;
      for (const [oldDoc, newDoc] of pairs) {
        // One copy per pair for all the users (cloning per call was most of the time); the
        // copies must come out unchanged, or a later user would have judged another document.
        const copies = { newDoc: structuredClone(newDoc), oldDoc: oldDoc === null ? null : structuredClone(oldDoc) };
        for (const user of users) {
          const agent = agentVerdict(newDoc, oldDoc, user);
          const server = serverVerdict(newDoc, oldDoc, user, copies);
          // The message is built only on a disagreement (building it for every pair cost seconds).
          if (server !== agent) assert.equal(server, agent, `user ${JSON.stringify(user)}\nold ${JSON.stringify(oldDoc)}\nnew ${JSON.stringify(newDoc)}`);
          if (user !== ADMIN_PARTY && user !== COORDINATOR) continue;
          if (expect === 'accept' && agent !== '') assert.equal(agent, '', `should accept ${JSON.stringify(newDoc)}`);
          if (expect === 'reject' && agent === '') assert.notEqual(agent, '', `should reject old ${JSON.stringify(oldDoc)}\nnew ${JSON.stringify(newDoc)}`);
        }
        assert.deepStrictEqual(copies, { newDoc, oldDoc }, 'validate_doc_update changed the documents it was given');
        n++;
      }
      return n;
    }

    it('accepts every transition, every collapsed run of transitions, every reachable new document', () => {
      const n = agree([...r.edges, ...collapsedPairs(r, 5000), ...r.docs.map((d): [unknown, unknown] => [null, d])], 'accept');
      assert.ok(n > 8000, `only ${n} pairs`);
    });

    it('agrees on random status jumps', () => {
      const random = prng(7);
      const statuses = allStatuses(STEP_NAMES);
      const pairs: Array<[unknown, unknown]> = [];
      for (let i = 0; i < 5000; i++) {
        const doc = r.docs[Math.floor(random() * r.docs.length)];
        pairs.push([doc, { ...doc, status: statuses[Math.floor(random() * statuses.length)] }]);
      }
      agree(pairs);
    });

    it("rejects illegal edits: going back, leaving bad, un-ok'ing, unknown status, wrong types", () => {
      const random = prng(11);
      const pairs: Array<[unknown, unknown]> = [];
      for (const doc of r.docs) {
        const okSteps = STEP_NAMES.filter((s) => (doc[s] as { ok?: boolean } | undefined)?.ok === true);
        if (doc.status === 'good') pairs.push([doc, { ...doc, status: 'closed' }]);
        if (doc.status === 'bad') pairs.push([doc, { ...doc, status: allStatuses(STEP_NAMES)[Math.floor(random() * 2)] }]);
        if (doc.status === 'closed' && okSteps.length === 0) pairs.push([doc, { ...doc, status: 'good' }]);
        if (okSteps.length > 0) {
          const step = okSteps[Math.floor(random() * okSteps.length)];
          pairs.push([doc, { ...doc, [step]: { ...(doc[step] as object), ok: false } }]);
          pairs.push([doc, { ...doc, [step]: undefined }]);
        }
        const unknown = ['done', 'proc9 queued', 'Closed', '', ' queued', 42, null, undefined][Math.floor(random() * 8)];
        pairs.push([doc, { ...doc, status: unknown }], [null, { ...doc, status: unknown }]);
        const wrong = ['yes', [], null, 3][Math.floor(random() * 4)];
        pairs.push([doc, { ...doc, [STEP_NAMES[Math.floor(random() * STEP_NAMES.length)]]: wrong }]);
        pairs.push([doc, { ...doc, type: 'something-else' }]);
        if (okSteps.length > 0) pairs.push([doc, { ...doc, [okSteps[0]]: { ...(doc[okSteps[0]] as object), ok: 'true' } }]);
      }
      assert.ok(agree(pairs, 'reject') > 10000);
    });

    it('custody[] is append-only and per site, purged written once by the ingest site (core/custody-rules.ts)', () => {
      const lyon: UserContext = { name: 'lyon-agent', roles: ['mesh-agent:lyon'] };
      const modane: UserContext = { name: 'modane-agent', roles: ['mesh-agent:modane'] };
      const op: UserContext = { name: 'op', roles: ['mesh-operator'] };
      const copy = (site: string, account: string | null, sha = 'a') => ({
        site,
        step: 'proc0',
        file: `/${site}/raw/f`,
        sha256: sha.repeat(64),
        size_in_bytes: 100,
        verified_at: '2026-11-26T11:00:00.000Z',
        account,
      });
      const base = good({ checksum: { sha256: 'a'.repeat(64) } });
      const held = { ...base, custody: [copy('lyon', 'lyon-agent')] };
      const purged = { at: '2026-11-27T00:00:00.000Z', by: 'modane/purge', user: 'modane-agent', site: 'modane', file: base.file, custody: held.custody };
      const done = { ...held, purged };
      const verdicts: Array<[old: unknown, next: unknown, user: UserContext, expected: RegExp | '']> = [
        [base, held, lyon, ''],
        [held, { ...held, custody: [...held.custody, copy('lyon', 'lyon-agent', 'b')] }, lyon, ''],
        [base, { ...base, custody: [copy('kit', 'lyon-agent')] }, lyon, /"lyon-agent" may not record custody for site "kit": its agents do/],
        [base, { ...base, custody: [copy('lyon', 'someone')] }, lyon, /custody entry 0 of account "someone" written by "lyon-agent"/],
        [base, held, op, /"op" may not record custody for site "lyon"/],
        [base, { ...base, custody: [copy('kit', 'coordinator')] }, COORDINATOR, ''],
        [held, base, COORDINATOR, /custody cannot be removed/],
        [held, { ...held, custody: [] }, ADMIN_PARTY, /custody entries cannot be removed/],
        [held, { ...held, custody: [copy('lyon', 'lyon-agent', 'c')] }, lyon, /custody entry 0 cannot change/],
        [base, { ...base, custody: [{ ...copy('lyon', 'lyon-agent'), sha256: 'nope' }] }, lyon, /custody entry 0 sha256 is "nope", expected 64 hex digits/],
        [base, { ...base, custody: [{ ...copy('lyon', 'lyon-agent'), size_in_bytes: -1 }] }, lyon, /custody entry 0 size_in_bytes is -1/],
        [base, { ...base, custody: 'lyon' }, ADMIN_PARTY, /custody is "lyon", expected a list of records/],
        [held, done, modane, ''],
        [held, done, lyon, /"lyon-agent" may not record a purge at "modane": the agents of the ingest site do/],
        [held, { ...done, purged: { ...purged, site: 'lyon' } }, lyon, /may not record a purge at "lyon"/],
        [held, { ...done, purged: { ...purged, user: 'someone' } }, modane, /purged.user is "someone" but the writer is "modane-agent"/],
        [held, done, COORDINATOR, ''],
        [done, { ...done, purged: { ...purged, at: '2026-11-28T00:00:00.000Z' } }, COORDINATOR, /purged is written once and cannot change/],
        [done, held, ADMIN_PARTY, /purged is written once and cannot change/],
        [held, { ...held, purged: true }, ADMIN_PARTY, /purged is true, expected a record object/],
        [null, { ...freshDoc(), custody: [copy('lyon', null)] }, ADMIN_PARTY, ''],
        [null, { ...freshDoc(), custody: [copy('lyon', 'modane-agent')] }, modane, /"modane-agent" may not record custody for site "lyon"/],
      ];
      for (const [oldDoc, newDoc, user, expected] of verdicts) {
        const verdict = agentVerdict(newDoc, oldDoc, user);
        if (expected === '') assert.equal(verdict, '', `${user.name}: ${JSON.stringify(newDoc).slice(0, 300)}`);
        else assert.match(verdict, expected);
        assert.equal(serverVerdict(newDoc, oldDoc, user), verdict);
      }
      agree(verdicts.map(([oldDoc, newDoc]) => [oldDoc, newDoc]));
    });

    describe('reprocess (core/supersede.ts): a done record leaves only into superseded, by an operator', () => {
      const OPERATOR: UserContext = { name: 'op', roles: ['mesh-operator'] };
      const AGENT: UserContext = { name: 'lyon-agent', roles: ['mesh-agent:lyon'] };
      const NOW = new Date('2026-11-26T12:00:00.000Z');
      const reprocessed = (doc: DaqDocument, step: string, user: string | null = 'op'): DaqDocument | undefined => {
        const result = transition(doc, { type: 'reprocess', step, by: 'operator/op', why: 'v2', user }, NOW, PIPELINE);
        return result.ok ? result.doc : undefined;
      };
      /** Every reachable document with a done step, reprocessed at each of its done steps. */
      const pairs: Array<[DaqDocument, DaqDocument]> = [];
      for (const doc of r.docs)
        for (const step of STEP_NAMES) {
          const again = reprocessed(doc, step);
          if (again) pairs.push([doc, again]);
        }
      const runAll = (doc: DaqDocument): DaqDocument => {
        for (const step of STEP_NAMES) {
          if (isDone(doc, step) || readyFor(doc, PIPELINE, NOW) !== step) continue;
          const claimed = transition(
            doc,
            { type: 'claim', step, mode: 'run', site: 'lyon', agent: 'a1', host: 'h', lease_until: '2026-11-26T13:00:00.000Z' },
            NOW,
            PIPELINE,
          );
          if (!claimed.ok) break;
          const done = transition(claimed.doc, { type: 'succeed', step, agent: 'a1', result: { exit_code: 0, duration_s: 1 } }, NOW, PIPELINE);
          if (!done.ok) break;
          doc = done.doc;
        }
        return doc;
      };
      const complete = runAll(freshDoc());

      it('accepts every reprocess the state machine makes, and the re-runs after it collapsed into one replicated write', () => {
        assert.ok(agree(pairs, 'accept') > 100, `only ${pairs.length} pairs`);
        // What another server may receive: a reprocess and the claims and successes after it, in one write.
        const collapsed: Array<[DaqDocument, DaqDocument]> = [];
        for (const [before, after] of pairs.slice(0, 400)) {
          const rerun = runAll(after);
          if (rerun !== after) collapsed.push([before, rerun]);
          // Reprocessed again at once (the same step, or the first), then re-run: still one write.
          const twice = reprocessed(rerun, STEP_NAMES[0]);
          if (twice) collapsed.push([before, runAll(twice)]);
        }
        assert.ok(agree(collapsed, 'accept', [ADMIN_PARTY, COORDINATOR]) > 100, `only ${collapsed.length} collapsed pairs`);
      });

      it('lets operators write it, not agents, readers nor accounts without a role', () => {
        for (const [before, after] of pairs.slice(0, 50)) {
          assert.equal(agentVerdict(after, before, OPERATOR), '');
          assert.equal(serverVerdict(after, before, OPERATOR), '');
        }
        const asAgent = reprocessed(complete, 'proc1', 'lyon-agent') as DaqDocument;
        assert.match(serverVerdict(asAgent, complete, AGENT), /lyon-agent" may not reprocess "proc1": operators do/);
        assert.equal(serverVerdict(asAgent, complete, AGENT), agentVerdict(asAgent, complete, AGENT));
        const asReader = reprocessed(complete, 'proc1', 'reader') as DaqDocument;
        assert.match(serverVerdict(asReader, complete, { name: 'reader', roles: ['mesh-reader'] }), /no mesh role allows it/);
      });

      it('refuses a done record removed or replaced without being superseded, a changed or shortened superseded, an unmarked reprocess', () => {
        const again = reprocessed(complete, 'proc1') as DaqDocument;
        const entry = again.history[again.history.length - 1];
        const others = again.history.slice(0, -1);
        const superseded = again.superseded as NonNullable<DaqDocument['superseded']>;
        const forged: Array<[DaqDocument, DaqDocument, RegExp]> = [
          [complete, { ...again, superseded: undefined }, /proc1 cannot be removed.*proc2 cannot be removed/],
          [complete, { ...again, superseded: [superseded[0]] }, /proc2 cannot be removed/],
          [
            complete,
            { ...again, superseded: [{ ...superseded[0], record: { ...superseded[0].record, exit_code: 7 } }, superseded[1]] },
            /proc1 cannot be removed/,
          ],
          [complete, { ...again, history: [...others, { ...entry, reprocess: undefined }] }, /proc1 cannot be removed.*is a reprocess: it must name the step/],
          // A reprocess of a later step does not let an earlier record go.
          [
            complete,
            { ...again, history: [...others, { ...entry, reprocess: 'proc2' }] },
            /^proc1 cannot be removed; superseded entry 0 \(proc1\) comes with no reprocess of proc1/,
          ],
          [complete, { ...again, history: [...others, { ...entry, reprocess: 'proc0' }] }, /reprocessing proc0 goes to "good", not "closed"/],
          [complete, { ...again, history: [...others, { ...entry, note: undefined }] }, /reprocessing proc1 has no note saying why/],
          [complete, { ...again, history: [...others, { ...entry, reprocess: 'proc9' }] }, /reprocesses "proc9", which is not a step/],
          [complete, { ...again, superseded: [...superseded, { ...superseded[0], at: 'yesterday' }] }, /superseded entry 2 \(proc1\) at is "yesterday"/],
          [complete, { ...again, superseded: [...superseded, 'x'] as never }, /superseded entry 2 is not \{ step, record/],
          [again, { ...again, superseded: superseded.slice(1) }, /superseded entries cannot be removed/],
          [again, { ...again, superseded: [superseded[1], superseded[0]] }, /superseded entry 0 cannot change/],
          [again, { ...again, superseded: undefined }, /superseded cannot be removed/],
          [again, { ...again, superseded: [...superseded, superseded[0]] }, /superseded entry 2 \(proc1\) comes with no reprocess/],
          [complete, { ...complete, superseded: 'none' as never }, /superseded is "none", expected a list/],
          // A new proc1 over the done one, the old one appended to superseded, but no reprocess entry: refused.
          [complete, { ...complete, proc1: { ...(complete.proc1 as object), exit_code: 3 }, superseded: [superseded[0]] }, /proc1 is done and cannot change/],
        ];
        for (const [before, after, why] of forged) {
          for (const user of [ADMIN_PARTY, COORDINATOR, OPERATOR]) {
            const verdict = serverVerdict(after, before, user);
            assert.match(verdict, why, `${JSON.stringify(user)}: ${verdict}`);
            assert.equal(verdict, agentVerdict(after, before, user));
          }
        }
      });
    });

    it('lets the admin party delete and write control documents', () => {
      assert.equal(serverVerdict({ _id: 'x', _deleted: true }, good()), '');
      assert.equal(serverVerdict({ _id: 'mesh-agent:lyon:a', type: 'mesh-agent', site: 'lyon', last_seen: 'now' }, null), '');
      assert.equal(serverVerdict(freshDoc(), { ...good(), _deleted: true }), '');
    });
  });

  describe("the operators' controls document (mesh:controls)", () => {
    const at = new Date('2026-12-01T10:00:00.000Z');
    const by = (user: string | null) => ({ by: `operator/${user}`, user, why: 'disk full at lyon' });
    const paused = applyControl(noControls(), 'pause', 'proc1', by('op'), at)!;
    const drained = applyControl(paused, 'drain', 'lyon', by('op'), at)!;
    const resumed = applyControl(drained, 'resume', 'proc1', by('op'), at)!;
    const verdicts = (oldDoc: unknown, newDoc: unknown) => {
      const out: Record<string, string> = {};
      for (const user of USERS) {
        const agent = agentVerdict(newDoc, oldDoc, user);
        assert.equal(serverVerdict(newDoc, oldDoc, user), agent, `user ${JSON.stringify(user)}\nnew ${JSON.stringify(newDoc)}`);
        out[user.name ?? 'admin party'] = agent;
      }
      return out;
    };

    it('an operator pauses, drains and resumes; agents, readers and the roleless may not', () => {
      for (const [oldDoc, newDoc] of [
        [null, paused],
        [paused, drained],
        [drained, resumed],
      ] as const) {
        const v = verdicts(oldDoc, newDoc);
        assert.equal(v.op, '');
        assert.equal(v['admin party'], '');
        assert.equal(v.coordinator, '');
        assert.match(v['lyon-agent'], /may not pause steps or drain sites: operators do/);
        assert.match(v.reader, /may not pause steps or drain sites/);
        assert.match(v.nobody, /may not pause steps or drain sites/);
      }
    });

    it('refuses forged authors, a missing why, rewritten history and other ids, on both sides', () => {
      const forgedUser = applyControl(noControls(), 'pause', 'proc1', by('someone'), at)!;
      assert.match(verdicts(null, forgedUser).op, /of account "someone" written by "op"/);
      assert.equal(verdicts(null, forgedUser).coordinator, '', "the relay carries other accounts' actions");
      const noWhy = applyControl(noControls(), 'pause', 'proc1', { ...by('op'), why: '' }, at)!;
      assert.match(verdicts(null, noWhy).op, /says no why/);
      assert.match(verdicts(paused, { ...drained, history: drained.history.slice(1) }).coordinator, /entry 0 cannot change|cannot be removed/);
      assert.match(verdicts(drained, { ...drained, history: [] }).op, /cannot be removed/);
      assert.match(verdicts(paused, { ...paused, paused: {} }).op, /without a controls history entry/);
      assert.match(verdicts(null, { ...paused, _id: 'mesh:controls2' })['admin party'], /is the type of "mesh:controls" only/);
      assert.match(verdicts(null, { ...paused, paused: 'proc1' }).op, /paused is "proc1", expected an object/);
      assert.match(verdicts(null, { ...paused, history: [{ ...paused.history[0], action: 'halt' }] }).op, /action "halt" is unknown/);
      assert.match(verdicts(null, { ...paused, history: undefined })['admin party'], /history is missing/);
      const sneaky = { ...paused, history: [...paused.history, { ...paused.history[0], at: 'yesterday' }] };
      assert.match(verdicts(paused, sneaky).op, /expected an ISO date/);
    });
  });

  describe('views', () => {
    const claimed = { attempts: 1, agent: 'a1', site: 'lyon', started: '2026-11-26T10:00:00.000Z', lease_until: '2026-11-26T10:01:00.000Z' };

    it('ready: a ready document appears for its step only, with its retry_after', () => {
      assert.deepEqual(runMap('ready', freshDoc()), [[['proc0', ''], null]]);
      assert.deepEqual(runMap('ready', good()), [[['proc1', ''], null]]);
      const later = '2999-01-01T00:00:00.000Z';
      assert.deepEqual(runMap('ready', good({ pending: { proc1: { attempts: 1, ok: false, retry_after: later } } })), [[['proc1', later], null]]);
      assert.deepEqual(runMap('ready', good({ proc1: ok, proc2: ok })), []);
      assert.deepEqual(runMap('ready', { ...good(), status: 'proc1 in progress', pending: { proc1: claimed } }), []);
      assert.deepEqual(runMap('ready', { ...freshDoc(), type: 'other' }), []);
    });

    it('ready agrees with readyFor (clock ignored) on every reachable document', () => {
      const farFuture = new Date('9999-01-01T00:00:00.000Z');
      for (const doc of r.docs) {
        const step = readyFor(doc, PIPELINE, farFuture);
        const emitted = runMap('ready', doc);
        assert.deepEqual(
          emitted.map(([key]) => (key as string[])[0]),
          step === undefined ? [] : [step],
          JSON.stringify(doc),
        );
      }
    });

    it("takes none of the names of the original scripts' views (_design/proc has them)", () => {
      const theirs = [...ORIGINAL_VIEWS, ...STEP_NAMES, ...STEP_NAMES.map(inProgressView)];
      assert.deepEqual(
        Object.keys(design.views).filter((name) => theirs.includes(name)),
        [],
      );
    });

    it('by_status, by_run, done', () => {
      const doc = good({ proc1: ok, status: 'good' });
      assert.deepEqual(runMap('by_status', doc), [['good', null]]);
      assert.deepEqual(runMap('by_run', doc), [[['lg23b002', 0], 'good']]);
      assert.deepEqual(runMap('done', doc), [
        ['proc0', null],
        ['proc1', null],
      ]);
    });

    it('in_flight', () => {
      const queued = { ...good(), status: 'proc1 queued', pending: { proc1: claimed } };
      const running = { ...good(), status: 'proc1 in progress', pending: { proc1: claimed } };
      const value = { agent: 'a1', site: 'lyon', attempts: 1, started: claimed.started };
      assert.deepEqual(runMap('in_flight', queued), [[['proc1', claimed.lease_until], value]]);
      assert.deepEqual(runMap('in_flight', running), [[['proc1', claimed.lease_until], value]]);
      assert.deepEqual(runMap('in_flight', good()), []);
    });

    it('failed_steps', () => {
      const failed = { ...good(), status: 'proc1 failed', pending: { proc1: { attempts: 2, ok: false, reason: 'exit 1', exit_code: 1, stderr_tail: 'oops' } } };
      assert.deepEqual(runMap('failed_steps', failed), [
        ['proc1', { reason: 'exit 1', exit_code: 1, stderr_tail: 'oops', run_name: 'lg23b002', file_number: 0 }],
      ]);
      assert.deepEqual(runMap('failed_steps', { ...good(), pending: { proc1: { attempts: 1, ok: false, retry_after: 'x' } } }), []);
    });

    it('custody_due and custody_copies', () => {
      const custodyInput = {
        ...input,
        steps: input.steps.map((s) =>
          s.name === 'proc0' ? { ...s, custody: true, executor: 'sftp' as const, to: 'kit' } : s.name === 'proc1' ? { ...s, custody: true } : s,
        ),
      };
      const custodyDesign = designDocument(custodyInput);
      assert.notEqual(custodyDesign.mesh.generated_from, design.mesh.generated_from, 'the custody steps are part of what the design is made from');
      const run = (name: string, doc: unknown): Emitted => {
        const emitted: Emitted = [];
        const map = new Function('emit', `return (${custodyDesign.views[name].map});`)((key: unknown, value: unknown) => emitted.push([key, value])) as (
          d: unknown,
        ) => void;
        map(structuredClone(doc));
        return emitted;
      };
      const sha = 'a'.repeat(64);
      const copy = (site: string, step: string, sha256 = sha) => ({ site, step, sha256, size_in_bytes: 100 });
      const both = good({ checksum: { sha256: sha }, proc1: { ...ok, site: 'lyon' }, status: 'good' });
      // proc0's copy is at kit (its `to`), proc1's at the site that ran it (lyon).
      assert.deepEqual(run('custody_due', both), [
        [['kit', 'proc0'], null],
        [['lyon', 'proc1'], null],
      ]);
      assert.deepEqual(
        run('custody_due', { ...both, custody: [copy('kit', 'proc0', 'b'.repeat(64))] }),
        [[['lyon', 'proc1'], null]],
        'a record, agreeing or not, is the verification',
      );
      assert.deepEqual(run('custody_due', freshDoc()), []);
      const closed = freshDoc().date_closed;
      assert.deepEqual(run('custody_copies', { ...both, custody: [copy('kit', 'proc0'), copy('lyon', 'proc1'), copy('modane', 'x'), copy('kit', 'y')] }), [
        [['kept', 2, closed], 100],
      ]);
      assert.deepEqual(run('custody_copies', { ...both, custody: [copy('kit', 'proc0'), copy('lyon', 'proc1', 'b'.repeat(64))] }), [
        [['kept', -1, closed], 100],
      ]);
      assert.deepEqual(run('custody_copies', { ...both, purged: { site: 'modane' } }), [[['purged', 0, closed], 100]]);
    });

    it('by_version: done records by step, version (null without) and run, valued by the bytes of their input; nothing of a bad document', () => {
      const doc = good({ size_in_bytes: 100, proc0: { ...ok, version: '1.2', file: '/o/p0', file_size: 40 }, proc1: { ...ok, file: '/o/p1' } });
      assert.deepEqual(runMap('by_version', doc), [
        [['proc0', '1.2', 'lg23b002'], 100],
        [['proc1', null, 'lg23b002'], 40],
      ]);
      // An original record without file_size: its bytes are unknown (0), not the raw file's.
      assert.deepEqual(runMap('by_version', good({ proc0: { ok: true, file: '/o' }, proc1: { ok: true } }))[1], [['proc1', null, 'lg23b002'], 0]);
      assert.deepEqual(runMap('by_version', good({ proc0: { ok: true }, proc1: { ok: true } }))[1], [['proc1', null, 'lg23b002'], 100]);
      assert.deepEqual(runMap('by_version', { ...doc, status: 'bad' }), []);
      assert.equal(design.views.by_version.reduce, '_stats');
    });

    it('conflicts and agents', () => {
      assert.deepEqual(runMap('conflicts', { ...good(), _conflicts: ['2-abc'] }), [['run_lg23b002_000', ['2-abc']]]);
      assert.deepEqual(runMap('conflicts', good()), []);
      assert.deepEqual(runMap('agents', { _id: 'agent:lyon:a1', type: 'mesh-agent', site: 'lyon', agent: 'a1', last_seen: 't' }), [[['lyon', 'a1'], 't']]);
      assert.deepEqual(runMap('agents', good()), []);
    });
  });

  it("keeps the original scripts' filters out of _design/mesh (they are in _design/proc)", () => {
    assert.equal('filters' in design, false);
  });
});
