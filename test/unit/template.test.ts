/**
 * Step templates: the loader and the agents share config/template.ts, so what the loader
 * accepts is what runs, and a problem of the template is never blamed on a document.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildArgv, fill, templateVars } from '../../agents/command.js';
import { checkProgram, isConfigurationFault } from '../../agents/config-fault.js';
import { outTemplateProblems, parseTemplate, runArgumentProblems } from '../../config/template.js';
import type { StepConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import { transition } from '../../core/state.js';
import { testFolder } from '../support/folders.js';

const step: StepConfig = {
  name: 'proc0',
  site: 'alpha',
  run: ['cp', '--', '{file}', '{out}'],
  out: '/data/{run_name}/{run_name}_{file_number}',
  timeout_s: 60,
  max_attempts: 3,
  lease_s: 10,
  executor: 'command',
};
const doc: DaqDocument = {
  _id: 'run_lg23b002_007',
  type: 'daqdocument',
  run_name: 'lg23b002',
  file_number: 7,
  file: '/daq/lg23b002_007',
  size_in_bytes: 1,
  date_closed: '2026-11-27T10:00:00.000Z',
  status: 'closed',
  history: [],
};
const values = { file: '/f', out: '/o', doc_id: 'd', run_name: 'r', file_number: '001', step: 's', prev_out: '/p', version: '1.0' };

describe('step templates', () => {
  it('parses literals and placeholders, and refuses unknown, unclosed and stray braces', () => {
    assert.deepEqual(parseTemplate('/a/{run_name}_{file_number}.root'), {
      ok: true,
      parts: [{ literal: '/a/' }, { placeholder: 'run_name' }, { literal: '_' }, { placeholder: 'file_number' }, { literal: '.root' }],
    });
    assert.deepEqual(parseTemplate(''), { ok: true, parts: [] });
    for (const [template, problem] of [
      ['/a/{file', /never closed/],
      ['{fi{le}', /never closed/],
      ['/a/file}', /closes no/],
      ['/a/{input}', /unknown placeholder \{input\}/],
      ['{}', /unknown placeholder \{\}/],
    ] as const) {
      const parsed = parseTemplate(template);
      assert.ok(!parsed.ok && problem.test(parsed.problem), `${template}: ${JSON.stringify(parsed)}`);
    }
  });

  it('refuses an out that is relative, starts its file name with "-", names one file for all, or is the input', () => {
    const cases: Array<[string, RegExp]> = [
      ['rel/{run_name}_{file_number}', /not an absolute path/],
      ['-{run_name}_{file_number}', /starting with "-"/],
      ['/data/-{run_name}_{file_number}', /starting with "-"/],
      ['/data/out', /no per-document placeholder/],
      ['/data/{run_name}', /no per-document placeholder/],
      ['/data/{step}_{file_number}', /no per-document placeholder/],
      ['/data/../{doc_id}', /"\." or "\.\." segment/],
      ['/data/{doc_id}/{out}', /\{out\} inside out/],
      ['{file}', /input file itself/],
      ['/data/{doc_id', /never closed/],
    ];
    for (const [template, problem] of cases) assert.match(outTemplateProblems(template).join('; '), problem, template);
    for (const good of ['/data/{run_name}/{run_name}_{file_number}', '{file}.root', '{prev_out}.txt', '/d/{doc_id}'])
      assert.deepEqual(outTemplateProblems(good), [], good);
    assert.deepEqual(runArgumentProblems('--output={out}'), [], 'a run argument may be an option');
    assert.match(runArgumentProblems('{file').join(), /never closed/);
  });

  it('expands with the same parser: values are never re-scanned', () => {
    assert.equal(fill('/x/{run_name}{file_number}', { ...values, run_name: '{file}' }), '/x/{file}001');
    assert.throws(
      () => fill('/x/{file', values),
      (e: unknown) => isConfigurationFault(e) && /^configuration: /.test((e as Error).message),
    );
    assert.deepEqual(buildArgv(step, templateVars(doc, step, undefined)), ['cp', '--', '/daq/lg23b002_007', '/data/lg23b002/lg23b002_007']);
    // {version}: each version's outputs apart, so a reprocessed step does not overwrite the output its superseded record names.
    const versioned = { ...step, out: '/data/v{version}/{doc_id}', version: '2.1' };
    assert.equal(templateVars(doc, versioned, undefined).out, `/data/v2.1/${doc._id}`);
  });

  it('blames a bad template on the configuration and a bad value on the document', () => {
    // A config built without the loader (an API caller) can hold any template.
    for (const out of ['rel/{run_name}_{file_number}', '/data/{file', '/data/const', '/data/-{doc_id}']) {
      assert.throws(
        () => templateVars(doc, { ...step, out }, undefined),
        (e: unknown) => isConfigurationFault(e) && /^configuration: step proc0: out /.test((e as Error).message),
        out,
      );
    }
    assert.throws(
      () => templateVars(doc, { ...step, run: ['cp', '{flie}'] }, undefined),
      (e: unknown) => isConfigurationFault(e) && /run\[1\]/.test((e as Error).message),
    );
    const hostile: Array<Partial<DaqDocument>> = [{ file: 'relative/name' }, { _id: '-rf' }, { run_name: '../x' }, { file: '/daq/a\nb' }];
    for (const fields of hostile) {
      assert.throws(
        () => templateVars({ ...doc, ...fields }, step, undefined),
        (e: unknown) => (e as { code?: string }).code === 'DOCUMENT_MALFORMED',
        JSON.stringify(fields),
      );
    }
    // {doc_id} is checked per document: "a/../b" passes the template check but not the path check.
    assert.throws(
      () => templateVars({ ...doc, _id: 'a/../b' }, { ...step, out: '/d/{doc_id}' }, undefined),
      (e: unknown) => (e as { code?: string }).code === 'DOCUMENT_MALFORMED',
    );
  });

  it('finds a missing program before anything is started', async () => {
    await checkProgram('sh', { PATH: '/usr/bin:/bin' });
    await checkProgram(process.execPath, {});
    await assert.rejects(
      checkProgram('no-such-program-here', { PATH: '/usr/bin:/bin' }),
      (e: unknown) => isConfigurationFault(e) && /in PATH/.test((e as Error).message),
    );
    await assert.rejects(checkProgram('/no/such/program', { PATH: '/usr/bin' }), isConfigurationFault);
    const plain = join(testFolder('program-'), 'not-executable');
    writeFileSync(plain, '#!/bin/sh\n', { mode: 0o644 });
    await assert.rejects(checkProgram(plain, {}), isConfigurationFault, 'a file that is not executable');
    await assert.rejects(checkProgram('/usr', {}), isConfigurationFault, 'a folder');
  });

  it('a final failure goes straight to failed, whatever attempts are left, and retry makes it ready', () => {
    const pipeline = { steps: [{ name: 'proc0', max_attempts: 3 }] };
    const now = new Date('2026-11-27T12:00:00.000Z');
    const running: DaqDocument = {
      ...doc,
      status: 'proc0 in progress',
      proc0: { attempts: 1, site: 'alpha', agent: 'a1', host: 'h', lease_until: '2026-11-27T13:00:00.000Z' },
    };
    const fail = { type: 'fail', step: 'proc0', agent: 'a1', reason: 'configuration: x', retry_after: now.toISOString() } as const;
    const retried = transition(running, fail, now, pipeline);
    assert.ok(retried.ok && retried.doc.status === 'closed', 'without final: a retry later');
    const failed = transition(running, { ...fail, final: true }, now, pipeline);
    assert.ok(failed.ok && failed.doc.status === 'proc0 failed' && (failed.doc.proc0 as { attempts: number }).attempts === 1);
    const again = transition(failed.doc, { type: 'retry', step: 'proc0', by: 'operator' }, now, pipeline);
    assert.ok(again.ok && again.doc.status === 'closed');
  });
});
