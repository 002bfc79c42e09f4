import assert from 'node:assert/strict';
import { parse } from 'acorn';
import { describe, it } from 'mocha';
import type { DaqDocument } from '../../core/document.js';
import { allStatuses } from '../../core/invariants.js';
import type { UserContext } from '../../core/roles.js';
import { writeProblems } from '../../core/write-rules.js';
import { applyControl, noControls } from '../../core/operator-controls.js';
import { readyFor } from '../../core/state.js';
import { ORIGINAL_VIEWS, inProgressView } from '../../config/step-names.js';
import { FIXED_VIEWS, designDocument } from '../../couchapp/design.js';
import { ADMIN_PARTY, COORDINATOR, DOC_TYPE, PIPELINE, POLICY, STEP_NAMES, collapsedPairs, freshDoc, prng, reachable } from '../support/generated-docs.js';

type Emitted = Array<[unknown, unknown]>;
type Validate = (newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj: unknown) => void;

const steps = PIPELINE.steps.map((s) => ({ ...s, site: 'lyon', run: [], out: '', timeout_s: 1, lease_s: 60, executor: 'command' as const }));
const site = (name: string, mayRun: string[]) => ({
  name,
  server: 'http://127.0.0.1:1',
  reachable: true,
  long_running: true,
  credentials_of: name,
  log_dir: '/tmp',
  may_run: mayRun,
  mesh: [],
});
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
