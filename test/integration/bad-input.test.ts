import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../couchapp/push.js';
import type { DaqDocument } from '../../core/document.js';
import { type ServerProcess } from '../support/server-process.js';
import { makeMesh, runMesh, seedDocuments, startAgent, serverForSuite, stopProcess, waitFor } from '../support/mesh.js';

describe('bad input', function () {
  this.timeout(120_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('malformed documents (written before the validation existed) are skipped with one logged reason each', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'], push: false });
    const base = { type: 'daqdocument', run_name: 'lg23b002', file_number: 1, file: '/data/x', size_in_bytes: 0, date_closed: new Date().toISOString(), status: 'closed', history: [] };
    const malformed = [
      { ...base, _id: 'm_no_file', file: undefined },
      { ...base, _id: 'm_number_string', file_number: '7' },
      { ...base, _id: 'm_unknown_status', status: 'proc9 in progress' },
      { ...base, _id: 'm_status_number', status: 42 },
      { ...base, _id: 'm_record_string', proc0: 'done' },
      { ...base, _id: 'm_attempts_text', proc0: { attempts: 'two' } },
    ];
    await mesh.db.bulk(malformed);
    await pushDesign(mesh.db, designDocument(mesh.config));
    const [good] = await seedDocuments(mesh, 1);
    const agent = startAgent(mesh, 'picky');
    await waitFor('the good document', async () => (await mesh.db.get<DaqDocument>(good))?.status === 'good');
    await new Promise((r) => setTimeout(r, 2500)); // at least two more sweeps
    await stopProcess(agent);
    const log = await readFile(join(mesh.dir, 'picky.log'), 'utf8');
    const skipped = log.split('\n').filter((l) => l.includes('skipped:'));
    const readyOnes = ['m_no_file', 'm_number_string', 'm_attempts_text'];
    for (const id of readyOnes) assert.equal(skipped.filter((l) => l.includes(`"doc":"${id}"`)).length, 1, `one reason for ${id}:\n${skipped.join('\n')}`);
    for (const m of malformed) {
      assert.ok(skipped.filter((l) => l.includes(`"doc":"${m._id}"`)).length <= 1, `${m._id} logged at most once`);
      assert.equal((await mesh.db.get<DaqDocument>(m._id))?.status, m.status, `${m._id} untouched`);
    }
  });

  it('a raw client writing an illegal transition gets 403', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const [id] = await seedDocuments(mesh, 1);
    const doc = (await mesh.db.get<DaqDocument>(id)) as DaqDocument;
    await assert.rejects(mesh.db.put({ ...doc, status: 'good' }), (e: { statusCode?: number }) => e.statusCode === 403);
    await assert.rejects(mesh.db.put({ ...doc, status: 'proc1 in progress' }), (e: { statusCode?: number }) => e.statusCode === 403);
    await assert.rejects(mesh.db.put({ ...doc, status: 'finished' }), (e: { statusCode?: number }) => e.statusCode === 403);
  });

  describe('invalid configurations exit 2 naming the key, the value and the expected form', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- raw JSON edited freely
    const cases: Array<[string, (c: Record<string, any>) => void, RegExp]> = [
      ['unknown top-level key', (c) => (c.colour = 'blue'), /colour/],
      ['unknown step key', (c) => (c.steps[0].shell = true), /steps\[0\]\.shell is not a known key/],
      ['run as a string', (c) => (c.steps[0].run = 'cp a b'), /steps\[0\]\.run is "cp a b", expected a non-empty argument vector/],
      ['unknown placeholder', (c) => (c.steps[0].run = ['cp', '{input}']), /steps\[0\]\.run\[1\].*\{input\}/],
      ['step of an unknown site', (c) => (c.steps[0].site = 'mars'), /steps\[0\]\.site is "mars", expected one of the sites/],
      ['credentials in the URL', (c) => (c.sites.alpha.server = 'http://admin:secret@127.0.0.1:1'), /sites\.alpha\.server .*without credentials/],
      ['reachable not a boolean', (c) => (c.sites.alpha.reachable = 'yes'), /sites\.alpha\.reachable is "yes", expected true or false/],
      ['pattern without groups', (c) => (c.ingest.pattern = '^(.*)$'), /ingest\.pattern .*named groups/],
      ['negative lease', (c) => (c.steps[0].lease_s = -1), /steps\[0\]\.lease_s is -1, expected a positive number/],
    ];
    for (const [name, mutate, expected] of cases) {
      it(name, async () => {
        const mesh = await makeMesh(server.url, { steps: ['proc0'], push: false });
        const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
        mutate(raw);
        await writeFile(mesh.configFile, JSON.stringify(raw));
        const result = await runMesh(['--config', mesh.configFile, 'status']);
        assert.equal(result.status, 2, result.stderr);
        assert.match(result.stderr, expected);
        assert.doesNotMatch(result.stderr, /secret/);
      });
    }
    it('a file that is not JSON', async () => {
      const mesh = await makeMesh(server.url, { steps: ['proc0'], push: false });
      await writeFile(mesh.configFile, '{ "database": ');
      const result = await runMesh(['--config', mesh.configFile, 'status']);
      assert.equal(result.status, 2);
      assert.match(result.stderr, /not valid JSON/);
    });
    it('an unknown site on the command line', async () => {
      const mesh = await makeMesh(server.url, { steps: ['proc0'], push: false });
      const result = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'nowhere', '--once']);
      assert.equal(result.status, 2);
      assert.match(result.stderr, /--site is "nowhere", expected one of: alpha/);
    });
  });
});
