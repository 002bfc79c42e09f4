/**
 * ingest.metadata without a process: the merge rules (pure), the argument vector, the child's
 * environment and the loader's checks. test/integration/ingest-metadata.test.ts runs real programs.
 */
import assert from 'node:assert/strict';
import { checkMetadataArgv, isReservedKey, mergeMetadata, metadataArgv } from '../../agents/ingest-metadata.js';
import { isConfigurationFault } from '../../agents/config-fault.js';
import { helperEnvironment } from '../../config/child-env.js';
import { parseMeshConfig } from '../../config/load.js';
import type { DaqDocument } from '../../core/document.js';
import { isMeshError } from '../../core/errors.js';
import { CATALOGUE_FIELDS } from '../../core/provenance.js';

const STEPS = ['proc0', 'proc1'];
const doc: DaqDocument = Object.freeze({
  _id: 'run_lg23b002_007',
  type: 'daqdocument',
  run_name: 'lg23b002',
  file_number: 7,
  file: '/daq/lg23b002/lg23b002_007',
  daq_host: 'ingest-host',
  size_in_bytes: 12,
  checksum: { sha256: 'a'.repeat(64) },
  date_closed: '2026-11-27T10:00:00.000Z',
  status: 'closed',
  history: [{ at: '2026-11-27T10:00:00.000Z', from: null, to: 'closed', by: 'alpha/ingest', user: null }],
});

function refused(output: string): string {
  const result = mergeMetadata(doc, output, STEPS);
  assert.ok(!result.ok, `${JSON.stringify(output).slice(0, 80)} was merged`);
  return result.reason;
}

describe('ingest metadata: the merge rules', () => {
  it('merges the fields of one JSON object, nested values as they are, over the default daq_host', () => {
    const header = {
      daq_host: 'daq7',
      run_start: '2026-11-26T09:00:00Z',
      bolometers: [{ id: 'FID801', channels: [1, 2] }, null],
      calib: { gain: 1.5, tags: {} },
      empty: null,
      flag: false,
    };
    const result = mergeMetadata(doc, `\n  ${JSON.stringify(header)}\n`, STEPS);
    assert.ok(result.ok);
    assert.deepEqual(result.doc, { ...doc, ...header });
    assert.equal(result.doc.daq_host, 'daq7', 'the file knows its DAQ host better than the machine that catalogues it');
    assert.equal(doc.daq_host, 'ingest-host', 'the input document is not changed');
    assert.deepEqual(mergeMetadata(doc, '{}', STEPS), { ok: true, doc: { ...doc } });
  });

  it('refuses every reserved key, never drops it: _*, state fields, catalogue fields, step names', () => {
    const reserved = [
      '_id',
      '_rev',
      '_deleted',
      '_attachments',
      '__proto__',
      '_anything',
      'type',
      'status',
      'history',
      'pending',
      'duplicates',
      'batchJob',
      ...CATALOGUE_FIELDS,
      ...STEPS,
    ];
    for (const key of reserved) {
      assert.ok(isReservedKey(key, STEPS), key);
      // A reserved key among allowed ones still refuses the whole output.
      const reason = refused(`{"daq_host": "daq7", ${JSON.stringify(key)}: {"ok": true}}`);
      assert.match(reason, new RegExp(`^sets reserved key ${JSON.stringify(key).replace(/[$()*+.?[\\\]^{|}]/g, '\\$&')}: `), key);
    }
    assert.match(refused('{"status": "good", "proc0": {}, "_id": "x"}'), /^sets reserved keys "status", "proc0", "_id": .*rename them$/);
    for (const free of ['daq_host', 'run_start', 'proc', 'proc01', 'Status', 'statuses', 'x_']) assert.ok(!isReservedKey(free, STEPS), free);
    assert.ok(!isReservedKey('proc2', STEPS), 'a step name is reserved only when the pipeline has that step');
  });

  it('refuses output that is not exactly one JSON object, saying what it was', () => {
    assert.match(refused(''), /printed nothing/);
    assert.match(refused(' \n'), /printed nothing/);
    for (const [output, said] of [
      ['[]', 'a JSON array'],
      ['[{"a": 1}]', 'a JSON array'],
      ['"daq7"', 'a JSON string'],
      ['42', 'a JSON number'],
      ['true', 'a JSON boolean'],
      ['null', 'null'],
    ]) {
      assert.equal(refused(output), `printed ${said}, expected one JSON object`, output);
    }
    for (const output of ['{"a": 1}{"b": 2}', '{"a": 1}\n{"b": 2}\n', 'daq_host=daq7', '{"a": 1', "{'a': 1}", '{"a": 1} trailing']) {
      assert.match(refused(output), /^printed ".*", which is not one JSON object \(.+\)$/, output);
    }
    for (const output of ['daq_host=daq7\n', `${'x'.repeat(200)}\n${'y'.repeat(200)}`, 'a\u2028b\r\nc'])
      assert.ok(!/[\n\r\u2028]/.test(refused(output)), `the reason is one line: ${refused(output)}`);
  });

  it('refuses fields that would make a document the agents refuse (nested too deep)', () => {
    let deep = '1';
    for (let i = 0; i < 80; i++) deep = `{"a": ${deep}}`;
    assert.match(refused(`{"header": ${deep}}`), /malformed: nested deeper than/);
  });
});

describe('ingest metadata: argument vector, environment, config', () => {
  it('expands {file}, {run_name}, {file_number} (three digits), {doc_id} as data, never re-scanned', () => {
    const file = { path: '/daq/lg23b002/lg23b002_007', id: 'run_lg23b002_007', runName: 'lg23b002', fileNumber: 7 };
    assert.deepEqual(metadataArgv(['/bin/hdr', '--file={file}', '{run_name}_{file_number}', '{doc_id}'], file), [
      '/bin/hdr',
      '--file=/daq/lg23b002/lg23b002_007',
      'lg23b002_007',
      'run_lg23b002_007',
    ]);
    assert.deepEqual(metadataArgv(['{file}'], { ...file, path: '/daq/{doc_id}' }), ['/daq/{doc_id}']);
  });

  it("refuses, as the configuration's fault, placeholders a new file does not have and empty vectors", () => {
    for (const argv of [['/bin/hdr', '{out}'], ['/bin/hdr', '{step}'], ['/bin/hdr', '{prev_out}'], ['/bin/hdr', '{file'], [], ['']]) {
      assert.throws(
        () => checkMetadataArgv(argv),
        (e: unknown) => isConfigurationFault(e) && /^configuration: /.test((e as Error).message),
        JSON.stringify(argv),
      );
    }
    checkMetadataArgv(['/bin/hdr', '{file}', '{doc_id}']);
  });

  it("gives the program PATH, locale and home, and none of the mesh's credentials", () => {
    const env = {
      PATH: '/opt/bin:/usr/bin',
      HOME: '/home/daq',
      LANG: 'C.UTF-8',
      MESH_ALPHA_USER: 'alpha',
      MESH_ALPHA_PASSWORD: 'hunter2',
      MESH_ALPHA_PASSWORD_FILE: '/run/secret',
      MESH_NATS_PASSWORD: 'x',
      AWS_SECRET_ACCESS_KEY: 'y',
      SSH_AUTH_SOCK: '/tmp/agent',
    };
    assert.deepEqual(helperEnvironment(env), { PATH: '/opt/bin:/usr/bin', HOME: '/home/daq', LANG: 'C.UTF-8' });
    assert.deepEqual(helperEnvironment({}), { PATH: '/usr/local/bin:/usr/bin:/bin' });
  });

  const base = {
    sites: { alpha: { server: 'http://127.0.0.1:5984', reachable: true, long_running: true } },
    ingest: { site: 'alpha' },
    steps: [{ name: 'proc0', site: 'alpha', run: ['true'], out: '/o/{run_name}_{file_number}' }],
  };
  const load = (ingest: Record<string, unknown>) => parseMeshConfig({ ...base, ingest: { site: 'alpha', ...ingest } }, 'test.json');
  function problem(ingest: Record<string, unknown>): string {
    try {
      load(ingest);
    } catch (error) {
      assert.ok(isMeshError(error, 'CONFIG_INVALID'), String(error));
      return error.message;
    }
    assert.fail(`${JSON.stringify(ingest)} was accepted`);
  }

  it('loads ingest.metadata and its timeout, frozen; absent or [] means none', () => {
    const config = load({ metadata: ['/opt/daq/bin/hdr', '{file}'], metadata_timeout_s: 5 });
    assert.deepEqual(config.ingest.metadata, ['/opt/daq/bin/hdr', '{file}']);
    assert.equal(config.ingest.metadata_timeout_s, 5);
    assert.ok(Object.isFrozen(config.ingest.metadata));
    for (const none of [{}, { metadata: [] }]) {
      const plain = load(none);
      assert.equal(plain.ingest.metadata, undefined);
      assert.equal(plain.ingest.metadata_timeout_s, 30);
    }
  });

  it('refuses a bad ingest.metadata at load time, naming the key, the value and the expected form', () => {
    const form =
      /expected an argument vector of non-empty strings, e\.g\. \[.*\] \(started without a shell; placeholders \{file\}, \{run_name\}, \{file_number\}, \{doc_id\}\), or \[\]/;
    for (const bad of ['/opt/daq/bin/hdr {file}', ['/opt/daq/bin/hdr', ''], ['/opt/daq/bin/hdr', 3], [['/opt/daq/bin/hdr']], { argv: ['x'] }, null, true]) {
      const message = problem({ metadata: bad });
      assert.ok(message.includes(`ingest.metadata is ${JSON.stringify(bad)}, expected `), message);
      assert.match(message, form);
    }
    assert.match(
      problem({ metadata: ['/bin/hdr', '{file}', '--out={out}'] }),
      /ingest\.metadata\[2\] is "--out=\{out\}", expected an argument with placeholders among \{file\}, \{run_name\}, \{file_number\}, \{doc_id\}, each brace closed; here: \{out\}, which a file being catalogued does not have yet/,
    );
    assert.match(problem({ metadata: ['/bin/hdr', '{file'] }), /ingest\.metadata\[1\] is "\{file".*never closed/);
    assert.match(problem({ metadata: ['/bin/hdr', 'a\nb'] }), /ingest\.metadata\[1\] .*a control character/);
    assert.match(
      problem({ metadata_timeout_s: '30' }),
      /ingest\.metadata_timeout_s is "30", expected a positive number of seconds \(a JSON number, not a string\)/,
    );
    assert.match(problem({ metadata_timeout_s: 0 }), /ingest\.metadata_timeout_s is 0, expected a positive number/);
    assert.match(problem({ metadata_command: ['x'] }), /metadata_command/);
  });
});
