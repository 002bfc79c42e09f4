/**
 * `mesh adopt` on a database the original scripts wrote (test/corpus/original-documents.json):
 * the dry run says per status what would change and writes nothing; adoption writes only what
 * the corpus expects, rewriting no record and no date; `mesh status` counts the documents; a
 * real agent then completes every document that can be completed, running each step that was
 * not done exactly once and none that was.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'mocha';
import { type DaqDocument, isDone, stepRecord } from '../../core/document.js';
import { isComplete } from '../../core/state.js';
import { readCorpus } from '../support/corpus.js';
import { makeMesh, runMesh, serverForSuite, startAgent, stopProcess, waitFor } from '../support/mesh.js';
import type { ServerProcess } from '../support/server-process.js';

interface Expectation {
  adopt: 'keep' | 'write' | 'stuck';
  change?: string;
  reason?: string;
  runs: string[];
}

const corpus = readCorpus<never, { documents: DaqDocument[]; expect: Record<string, Expectation> }>('original-documents.json');
const STEPS = ['proc0', 'proc1', 'proc2'];
/** What adoption may add or change; every other field must stay as the original scripts wrote it. */
const ADOPTION_FIELDS = ['_rev', 'status', 'pending', 'history'];

function without(doc: Record<string, unknown>, fields: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(doc).filter(([key]) => !fields.includes(key)));
}

describe('mesh adopt: a database of the original scripts taken over as it is', function () {
  this.timeout(240_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('dry run, adoption, status, then the agents complete what can be completed and run nothing twice', async () => {
    const mesh = await makeMesh(server.url, { push: false });
    const written = await mesh.db.bulk(corpus.documents);
    assert.deepEqual(
      written.filter((r) => r.error),
      [],
      'the original documents are stored (before any validate_doc_update)',
    );
    const push = await runMesh(['--config', mesh.configFile, 'couchapp', 'push']);
    assert.equal(push.status, 0, push.stderr);
    const read = async () =>
      new Map(
        (await mesh.db.allDocs<DaqDocument>({ include_docs: true })).rows
          .filter((r) => r.doc?.type === 'daqdocument')
          .map((r) => [String(r.id), r.doc as DaqDocument]),
      );
    const before = await read();

    const dry = await runMesh(['--config', mesh.configFile, 'adopt', '--site', 'alpha', '--dry-run', '--retry-failed']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /16 documents of the pipeline, 0 others \(not touched\) — dry run, nothing written/);
    assert.match(dry.stdout, /^ {2}closed +2 +kept as they are$/m);
    assert.match(dry.stdout, /^ {2}good +3 +kept as they are$/m);
    assert.match(dry.stdout, /^ {2}good +1 +left alone: proc2 is done but proc1 before it is not$/m);
    assert.match(dry.stdout, /^ {2}proc1 queued +1 +would change: back to good: proc1 runs again \(batch job 4711 forgotten\)$/m);
    assert.match(dry.stdout, /^ {2}proc1 failed +1 +would change: proc1 ready again \(--retry-failed\)$/m);
    assert.match(dry.stdout, /^ {2}proc0 in progress +1 +would change: back to closed: proc0 runs again$/m);
    assert.match(dry.stdout, /^ {2}bad +1 +kept as they are$/m);
    assert.deepEqual(await read(), before, 'the dry run wrote nothing');

    const adopted = await runMesh(['--config', mesh.configFile, 'adopt', '--site', 'alpha', '--retry-failed']);
    assert.equal(adopted.status, 0, adopted.stderr);
    assert.match(adopted.stdout, /^9 written, 0 not written$/m);
    const after = await read();
    for (const original of corpus.documents) {
      const expected = corpus.expect[original._id];
      const doc = after.get(original._id) as DaqDocument;
      const old = before.get(original._id) as DaqDocument;
      if (expected.adopt === 'write') {
        assert.notEqual(doc._rev, old._rev, `${doc._id} written`);
        assert.deepEqual(without(doc, ADOPTION_FIELDS), without(old, ADOPTION_FIELDS), `${doc._id}: adoption changed only status, pending and history`);
        assert.equal(doc.history.length, 1, `${doc._id}: one history entry, by mesh/adopt`);
        assert.equal(doc.history[0].by, 'mesh/adopt');
        assert.equal(doc.history[0].from, old.status);
      } else {
        assert.deepEqual(doc, old, `${doc._id} (${expected.adopt}) is untouched`);
      }
    }
    const queued = stepRecord(after.get('lg23b002_007') as DaqDocument, 'proc1');
    assert.deepEqual(queued?.batch, { system: 'sge', id: '4711' }, 'the original batch job number is kept in the pending record');
    const again = await runMesh(['--config', mesh.configFile, 'adopt', '--site', 'alpha', '--retry-failed']);
    assert.match(again.stdout, /^0 written, 0 not written$/m, 'a second adoption changes nothing');

    const status = JSON.parse((await runMesh(['--config', mesh.configFile, 'status', '--json'])).stdout) as {
      databases: Array<{ by_status: Record<string, number>; steps: Record<string, { done: number }> }>;
    };
    const counted = status.databases[0];
    assert.deepEqual(counted.by_status, { bad: 1, closed: 5, good: 10 }, JSON.stringify(counted.by_status));
    assert.equal(counted.steps.proc0.done, 11, 'every legacy proc0 record counts as done');
    assert.equal(counted.steps.proc2.done, 2);

    const agent = startAgent(mesh, 'adopter');
    const finished = (d: DaqDocument) => isComplete(d, mesh.config) || d.status === 'bad' || corpus.expect[d._id].adopt === 'stuck';
    try {
      await waitFor('every adoptable document complete', async () => [...(await read()).values()].every(finished), 120_000, 500);
    } finally {
      assert.equal(await stopProcess(agent), 0);
    }

    const runs = (await readFile(mesh.runLog, 'utf8')).trim().split('\n').filter(Boolean);
    const ranFor = (id: string) =>
      runs
        .filter((line) => line.startsWith(`${id} `))
        .map((line) => line.split(' ')[1])
        .sort();
    const done = await read();
    for (const original of corpus.documents) {
      const expected = corpus.expect[original._id];
      assert.deepEqual(ranFor(original._id), [...expected.runs].sort(), `${original._id}: the steps that ran`);
      const doc = done.get(original._id) as DaqDocument;
      for (const step of STEPS) {
        if (isDone(original, step)) assert.deepEqual(doc[step], original[step], `${original._id}.${step}, done by the original scripts, unchanged`);
      }
      if (expected.adopt === 'stuck') assert.deepEqual(doc, before.get(original._id), `${original._id} left alone`);
    }
    const log = await readFile(`${mesh.dir}/adopter.log`, 'utf8');
    assert.match(log, /skipped: proc2 is done but proc1 before it is not/, 'the agent says why it leaves the inconsistent document');
  });
});
