/** The run document's pure logic (core/run-document.ts) and the tar reader custody relies on (agents/tar-members.ts). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'mocha';
import { tarEntries } from '../../agents/tar-members.js';
import type { DaqDocument } from '../../core/document.js';
import { type RunMember, closedBecause, membersNotDone, newRunDocument, runReadyFor, withMember } from '../../core/run-document.js';
import { testFolder } from '../support/folders.js';

const member = (n: number): RunMember => ({ doc_id: `run_lg23b002_00${n}`, file: `/daq/lg23b002_00${n}`, size_in_bytes: n, sha256: String(n).repeat(64) });
const T0 = '2026-11-26T10:00:00.000Z';
const pipeline = { steps: [{ name: 'archive', max_attempts: 2 }] };

describe('core/run-document', () => {
  it('appends members once, in order; after a run step has a record, a new file is a late member', () => {
    let doc = newRunDocument('lg23b002', member(0), T0, 'modane/ingest', 'modane-agent');
    assert.equal(doc._id, 'runinfo_lg23b002');
    doc = withMember(doc, member(1), ['archive'], T0).doc;
    assert.equal(withMember(doc, member(1), ['archive'], T0).doc, doc, 'a listed member changes nothing');
    assert.deepEqual(
      doc.members.map((m) => m.doc_id),
      ['run_lg23b002_000', 'run_lg23b002_001'],
    );
    const started = { ...doc, status: 'archive in progress', pending: { archive: { attempts: 1, agent: 'a', lease_until: T0 } } };
    const late = withMember(started, member(2), ['archive'], T0);
    assert.equal(late.late, true);
    assert.equal(late.doc.members.length, 2);
    assert.deepEqual(late.doc.late_members, [member(2)]);
    assert.equal(withMember(late.doc, member(2), ['archive'], T0).doc, late.doc, 'a late member is listed once');
  });

  it('closes by marker at once, by quiet after run_quiet_s since the last member; ready only once closed', () => {
    const doc = newRunDocument('lg23b002', member(0), T0, 'modane/ingest', null);
    const at = (s: number) => new Date(Date.parse(T0) + s * 1000);
    assert.equal(closedBecause(doc, 60, false, at(59)), undefined);
    assert.equal(closedBecause(doc, 60, false, at(60)), 'quiet');
    assert.equal(closedBecause(doc, 60, true, at(1)), 'marker');
    assert.equal(runReadyFor(doc, pipeline, at(100)), undefined, 'open: not ready');
    assert.equal(runReadyFor({ ...doc, closed_at: T0, closed_by: 'marker' }, pipeline, at(100)), 'archive');
  });

  it('a member not done (or not found) holds the run back', () => {
    const done = { _id: 'run_lg23b002_000', status: 'good', proc0: { attempts: 1 } } as unknown as DaqDocument;
    const failed = { _id: 'run_lg23b002_001', status: 'good', pending: { proc0: { attempts: 1, ok: false } } } as unknown as DaqDocument;
    const docs = new Map([
      [done._id, done],
      [failed._id, failed],
    ]);
    assert.deepEqual(membersNotDone([member(0), member(1), member(2)], docs, 'proc0'), ['run_lg23b002_001', 'run_lg23b002_002']);
  });
});

describe('agents/tar-members', () => {
  it('hashes every file of a tar made by GNU tar, in its gnu and pax formats, long names included', async () => {
    const dir = testFolder('mesh-tar-');
    const deep = join(dir, 'd'.repeat(90), 'e'.repeat(60));
    await mkdir(deep, { recursive: true });
    const files = [join(dir, 'small'), join(dir, 'empty'), join(deep, 'long-name-file')];
    const contents = [randomBytes(1500), Buffer.alloc(0), randomBytes(70_000)];
    for (const [i, f] of files.entries()) await writeFile(f, contents[i]);
    await writeFile(join(dir, 'list'), files.map((f) => `${f}\n`).join(''));
    for (const format of ['gnu', 'pax']) {
      const tar = join(dir, `a-${format}.tar`);
      const made = spawnSync('tar', [
        '--create',
        `--format=${format}`,
        '--absolute-names',
        '--file',
        tar,
        '--verbatim-files-from',
        '--files-from',
        join(dir, 'list'),
      ]);
      assert.equal(made.status, 0, made.stderr.toString());
      const entries = await tarEntries(tar);
      assert.equal(entries.size, 3, format);
      for (const [i, f] of files.entries()) {
        assert.deepEqual(entries.get(f), { size: contents[i].length, sha256: createHash('sha256').update(contents[i]).digest('hex') }, `${format} ${f}`);
      }
    }
  });
});
