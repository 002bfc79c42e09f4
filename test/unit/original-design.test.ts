/**
 * `_design/proc` against the implementation of its table in test/support/original-views.ts,
 * written independently of the generator: every map function and both filters, run as the
 * embedded server runs them, over hand-built documents and every (status × present records)
 * combination of four pipelines.
 */
import assert from 'node:assert/strict';
import { parse } from 'acorn';
import { describe, it } from 'mocha';
import { parseMeshConfig } from '../../config/load.js';
import { stepNameClash } from '../../config/step-names.js';
import { designDocument } from '../../couchapp/design.js';
import { originalDesignDocument } from '../../couchapp/original-design.js';
import { compileMap, deepFreeze } from '../../server/view-functions.js';
import { type LooseDoc, ORIGINAL_DOC_TYPE as DOC_TYPE, originalDocs } from '../support/original-docs.js';
import { type Row, expected, expectedNewproc0, expectedStatusgood, viewNames } from '../support/original-views.js';

const stepConfig = (name: string) => ({ name, site: 'lyon', run: [], out: '', timeout_s: 1, max_attempts: 1, lease_s: 60, executor: 'command' as const });
// `constructor`: a step named like a member of Object.prototype is present only when the document has it.
const PIPELINES = [['proc0', 'proc1', 'proc2'], ['proc0'], ['transfer', 'convert', 'analyse', 'publish'], ['constructor', 'convert']];

// ---- Documents ---------------------------------------------------------------------------------

/** Every status of the pipeline (and a few no pipeline has) × every set of present records. */
function combinations(steps: string[]): LooseDoc[] {
  const statuses: Array<string | undefined> = [
    'closed',
    'good',
    'bad',
    ...steps.flatMap((s) => [`${s} queued`, `${s} in progress`, `${s} failed`]),
    'proc9 queued',
    'badly formed',
    undefined,
  ];
  const files = [0, 7, 42, 999, 1000, 1234];
  const docs: LooseDoc[] = [];
  for (const status of statuses) {
    for (let mask = 0; mask < 2 ** steps.length; mask++) {
      const records = Object.fromEntries(steps.flatMap((s, i) => ((mask >> i) & 1 ? [[s, { ok: true }]] : [])));
      const n = docs.length;
      docs.push({
        _id: `c${n}`,
        type: DOC_TYPE,
        run_name: n % 2 ? 'lg23b002' : 'lh18c005',
        file_number: files[n % files.length],
        ...(status === undefined ? {} : { status }),
        ...records,
      });
    }
  }
  const first = steps[0];
  const odd: Array<Partial<LooseDoc>> = [
    { run_name: undefined },
    { run_name: '' },
    { run_name: 5 },
    { file_number: undefined },
    { file_number: '7' },
    { file_number: '0042' },
    { file_number: -1 },
    { file_number: 1.5 },
    { file_number: 'x7' },
    { file_number: null },
    { type: 'otherdoc' },
    { type: undefined },
    { [first]: null },
    { [first]: {} },
    { [first]: false },
    { [first]: 0 },
  ];
  for (const status of ['closed', 'good']) {
    for (const change of odd) docs.push({ _id: `o${docs.length}`, type: DOC_TYPE, run_name: 'lg23b002', file_number: 7, status, ...change });
  }
  // A deletion, as the changes feed hands it to the filters.
  docs.push({ _id: 'deleted', _deleted: true });
  return docs;
}

// ---- Running the generated functions as the embedded server does -------------------------------

function runView(source: string, doc: LooseDoc): Row[] {
  const rows: Row[] = [];
  compileMap(source, (key, value) => rows.push([key, value]))(deepFreeze(structuredClone(doc)));
  return rows;
}

function runFilter(source: string, doc: LooseDoc): unknown {
  return (new Function(`"use strict"; return (${source});`)() as (doc: unknown, req: unknown) => unknown)(deepFreeze(structuredClone(doc)), {});
}

describe('couchapp/original-design (_design/proc)', () => {
  for (const steps of PIPELINES) {
    describe(`pipeline ${steps.join(', ')}`, () => {
      const design = originalDesignDocument({ doc_type: DOC_TYPE, steps: steps.map(stepConfig) });
      const docs = [...(steps[0] === 'proc0' && steps.length === 3 ? originalDocs() : []), ...combinations(steps)];

      it('has the views of the table, each ES5 only, reduced where the table says', () => {
        assert.deepEqual(Object.keys(design.views).sort(), viewNames(steps).sort());
        const reduces = Object.fromEntries(Object.entries(design.views).flatMap(([name, v]) => (v.reduce ? [[name, v.reduce]] : [])));
        assert.deepEqual(reduces, { status: '_sum', daqdoc: '_stats' });
        for (const source of [...Object.values(design.filters), ...Object.values(design.views).map((v) => v.map)]) {
          assert.doesNotThrow(() => parse(`(${source})`, { ecmaVersion: 5 }), source.slice(0, 200));
          assert.doesNotMatch(
            source,
            /\.(includes|startsWith|endsWith|find|findIndex|padStart|repeat)\(|Number\.isInteger|Object\.(assign|entries|values|hasOwn)\(|Array\.from|\bnew (Map|Set)\b/,
          );
        }
      });

      it(`every view emits the table's rows, on ${docs.length} documents`, () => {
        let emitted = 0;
        for (const doc of docs) {
          const want = expected(doc, steps);
          for (const [name, view] of Object.entries(design.views)) {
            const got = runView(view.map, doc);
            assert.deepEqual(got, want[name], `view ${name}, document ${JSON.stringify(doc)}`);
            emitted += got.length;
          }
        }
        assert.ok(emitted > docs.length, `only ${emitted} rows`);
      });

      it('every view selects some document and leaves out some other (the documents exercise it)', () => {
        for (const name of Object.keys(design.views)) {
          const selected = docs.filter((doc) => runView(design.views[name].map, doc).length > 0).length;
          if (name === 'raw' && steps.length === 1) assert.equal(selected, 0, 'raw selects nothing in a pipeline of one step');
          else assert.ok(selected > 0 && selected < docs.length, `${name} selects ${selected} of ${docs.length}`);
        }
      });

      it('filters newproc0 and statusgood', () => {
        for (const doc of docs) {
          assert.equal(runFilter(design.filters.newproc0, doc), expectedNewproc0(doc, steps), `newproc0 ${JSON.stringify(doc)}`);
          assert.equal(runFilter(design.filters.statusgood, doc), expectedStatusgood(doc), `statusgood ${JSON.stringify(doc)}`);
        }
      });
    });
  }

  it('keys a file as the originals did: lg23b002_007, lg23b002_1234', () => {
    const design = originalDesignDocument({ doc_type: DOC_TYPE, steps: PIPELINES[0].map(stepConfig) });
    const byId = new Map(originalDocs().map((d) => [d._id, d]));
    assert.deepEqual(runView(design.views.daqdoc.map, byId.get('d03')!), [['lg23b002_007', 1]]);
    assert.deepEqual(runView(design.views.statusbyrun.map, byId.get('d04')!), [['lg23b002_1234', 'good']]);
    assert.deepEqual(runView(design.views.procbyrun.map, byId.get('d07')!), [[['lg23b002_008', 'proc0'], 'good']]);
    assert.deepEqual(runView(design.views.procbyrun.map, byId.get('d25')!), [[['lh18c006_003', 'mixed_state'], 'good']]);
  });

  it('is deterministic; its name comes from original_design (default proc), never mesh', () => {
    const input = { doc_type: DOC_TYPE, steps: PIPELINES[0].map(stepConfig) };
    assert.deepEqual(originalDesignDocument(input), originalDesignDocument(input));
    assert.equal(originalDesignDocument(input)._id, '_design/proc');
    assert.equal(originalDesignDocument({ ...input, original_design: 'edwproc' })._id, '_design/edwproc');
    assert.notEqual(originalDesignDocument({ ...input, doc_type: 'other' }).mesh.generated_from, originalDesignDocument(input).mesh.generated_from);
    for (const name of ['mesh', 'Proc', '_proc', 'a/b', ''])
      assert.throws(() => originalDesignDocument({ ...input, original_design: name }), { code: 'CONFIG_INVALID' }, name);
  });

  it('the config key original_design: default proc, a plain name, refused when it would be _design/mesh', () => {
    const raw = (extra: object) => ({
      sites: { alpha: { server: 'http://127.0.0.1:1', reachable: true, long_running: true } },
      ingest: { site: 'alpha' },
      steps: [{ name: 'proc0', site: 'alpha', run: ['cp', '{file}', '{out}'], out: '/data/{doc_id}' }],
      ...extra,
    });
    assert.equal(parseMeshConfig(raw({}), '/tmp/mesh.json').original_design, 'proc');
    assert.equal(parseMeshConfig(raw({ original_design: 'edwproc' }), '/tmp/mesh.json').original_design, 'edwproc');
    for (const bad of ['mesh', 'Proc', 'a/b', '']) {
      assert.throws(
        () => parseMeshConfig(raw({ original_design: bad }), '/tmp/mesh.json'),
        (error: Error) => error.message.includes(`original_design is ${JSON.stringify(bad)}, expected a design document name`),
      );
    }
    assert.throws(() => parseMeshConfig(raw({ original_design: 42 }), '/tmp/mesh.json'), /original_design/);
  });

  it("a step may not be named like a view of _design/proc, nor like another step's <step>inprogress", () => {
    for (const name of ['inqueue', 'inprogress', 'failed', 'bad', 'status', 'statusbyrun', 'daqdoc', 'raw', 'procbyrun']) assert.ok(stepNameClash(name), name);
    assert.match(stepNameClash('proc0inprogress', ['proc0', 'proc0inprogress']) ?? '', /step "proc0"'s view proc0inprogress/);
    assert.equal(stepNameClash('proc0inprogress', ['proc0inprogress']), undefined);
    const clashing = { doc_type: DOC_TYPE, steps: ['a', 'ainprogress'].map(stepConfig) };
    assert.throws(() => originalDesignDocument(clashing), { code: 'CONFIG_INVALID' });
    assert.throws(() => designDocument(clashing), { code: 'CONFIG_INVALID' });
  });
});
