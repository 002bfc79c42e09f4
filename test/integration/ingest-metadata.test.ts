/**
 * ingest.metadata with real programs: the real ingest (in process, and `mesh ingest`) against
 * the embedded server over HTTP, and a header reader written here that misbehaves on demand,
 * chosen by the first line of each DAQ file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type IngestReport, ingestDirectory } from '../../agents/ingest.js';
import { parseMeshConfig } from '../../config/load.js';
import type { IngestConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import type { ServerProcess } from '../support/server-process.js';
import { type TestMesh, makeMesh, runMesh, serverForSuite } from '../support/mesh.js';

/**
 * argv: FILE RUN_NAME FILE_NUMBER DOC_ID WORK MODE. Reads the file's first line: "DAQ host start"
 * is a header; LINGER is one but leaves a child running; RESERVED, GARBAGE, EXIT3, SIGNAL, FLOOD
 * and HANG misbehave unless MODE is fixed.
 * Each run logs how many copies of it run at that moment (from /proc) to WORK/running.log.
 */
const HEADER_READER = `
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const [file, runName, fileNumber, docId, work, mode] = process.argv.slice(2);
const self = process.argv[1];
const copies = readdirSync('/proc').filter((p) => {
  if (!/^\\d+$/.test(p)) return false;
  try {
    const stat = readFileSync('/proc/' + p + '/stat', 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z') && readFileSync('/proc/' + p + '/cmdline', 'utf8').split('\\0').includes(self);
  } catch {
    return false;
  }
}).length;
appendFileSync(join(work, 'running.log'), copies + '\\n');
const fd = openSync(file, 'r');
const buffer = Buffer.alloc(256);
const length = readSync(fd, buffer, 0, 256, 0);
closeSync(fd);
const [magic, host, start] = buffer.subarray(0, length).toString('utf8').split('\\n')[0].split(' ');
const header = { daq_host: magic === 'DAQ' ? host : 'daq9', run_start: start ?? null, header: { magic, run: runName, file_number: fileNumber, doc: docId, bytes: length, channels: [1, 2, { off: null }] }, env_keys: Object.keys(process.env).sort(), stdin_bytes: readFileSync(0).length };
if (mode === 'fixed' || magic === 'DAQ') process.stdout.write(JSON.stringify(header) + '\\n');
else if (magic === 'RESERVED') process.stdout.write(JSON.stringify({ daq_host: 'daq7', status: 'good' }));
else if (magic === 'GARBAGE') process.stdout.write('daq_host=daq7\\n');
else if (magic === 'EXIT3') {
  process.stderr.write('reading header\\nbad header magic\\n');
  process.exit(3);
} else if (magic === 'SIGNAL') {
  process.kill(process.pid, 'SIGTERM');
  setInterval(() => undefined, 1000);
} else if (magic === 'FLOOD') process.stdout.write('x'.repeat(2 << 20));
else if (magic === 'LINGER') {
  // A good header, and a child left behind holding stdout open.
  const child = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)'], { stdio: ['ignore', 'inherit', 'inherit'] });
  child.unref();
  writeFileSync(join(work, 'linger.pids'), String(child.pid));
  process.stdout.write(JSON.stringify({ ...header, daq_host: 'daq6' }));
} else if (magic === 'HANG') {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)'], { stdio: 'ignore' });
  writeFileSync(join(work, 'hang.pids'), process.pid + ' ' + child.pid);
  setInterval(() => undefined, 1000);
}
`;

const TIMEOUT_S = 3;
const CONTENTS: Record<string, string> = {
  '000': 'DAQ daq7 2026-11-26T09:00:00Z\nsamples',
  '001': 'DAQ daq8 2026-11-26T09:05:00Z\nsamples',
  '002': 'RESERVED\n',
  '003': 'GARBAGE\n',
  '004': 'EXIT3\n',
  '005': 'SIGNAL\n',
  '006': 'FLOOD\n',
  '007': 'HANG\n',
  '008': 'LINGER\n',
};
const EXPECTED: Record<string, RegExp> = {
  '002': /^metadata program ".*" sets reserved key "status": fields starting with "_", .* belong to the mesh; rename them$/,
  '003': /^metadata program ".*" printed "daq_host=daq7\\n", which is not one JSON object \(/,
  '004': /^metadata program ".*" exited with 3 \(stderr: reading header \| bad header magic\)$/,
  '005': /^metadata program ".*" was killed by SIGTERM$/,
  '006': /^metadata program ".*" printed more than 1 MiB on stdout: killed$/,
  '007': new RegExp(`^metadata program ".*" was still running after ${TIMEOUT_S} s: killed with its process group$`),
};

/** Whether a process runs (a zombie does not: its parent may be an init that never reaps). */
function running(pid: number | string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

async function processesRunning(script: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || !running(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(script)) found.push(Number(entry));
  }
  return found;
}

describe('ingest metadata: a real program per new file', function () {
  this.timeout(120_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  async function setUp(): Promise<{
    mesh: TestMesh;
    daq: string;
    work: string;
    script: string;
    ingestWith: (mode: string, extra?: Partial<IngestConfig>) => Promise<IngestReport>;
  }> {
    const mesh = await makeMesh(server.url, { steps: ['proc0', 'proc1'] });
    const daq = join(mesh.dir, 'daq');
    const work = join(mesh.dir, 'metadata');
    await mkdir(join(daq, 'lg23b002'), { recursive: true });
    await mkdir(work);
    const script = join(work, 'read-header.mjs');
    await writeFile(script, HEADER_READER);
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    const ingestWith = (mode: string, extra: Partial<IngestConfig> = {}) => {
      // Through the loader: what runs is what it accepted.
      raw.ingest = {
        ...raw.ingest,
        metadata: [process.execPath, script, '{file}', '{run_name}', '{file_number}', '{doc_id}', work, mode],
        metadata_timeout_s: TIMEOUT_S,
      };
      const config = parseMeshConfig(raw, mesh.configFile);
      return ingestDirectory(daq, {
        db: mesh.db,
        docType: config.doc_type,
        ingest: { ...config.ingest, ...extra },
        stepNames: config.steps.map((s) => s.name),
        site: 'alpha',
      });
    };
    return { mesh, daq, work, script, ingestWith };
  }

  it('merges the header into each new document; a failing program leaves only its file uncatalogued, with why, until a fixed one runs', async () => {
    const { mesh, daq, work, script, ingestWith } = await setUp();
    for (const [n, text] of Object.entries(CONTENTS)) {
      await writeFile(join(daq, 'lg23b002', `lg23b002_${n}`), text);
      await writeFile(join(daq, 'lg23b002', `lg23b002_${n}.closed`), '');
    }
    // A credential in the mesh's environment must not reach the program.
    process.env.MESH_ALPHA_PASSWORD = 'hunter2';
    let first: IngestReport;
    try {
      first = await ingestWith('broken');
    } finally {
      delete process.env.MESH_ALPHA_PASSWORD;
    }

    assert.equal(first.created, 3, JSON.stringify(first));
    assert.deepEqual(first.rejected, []);
    const reasons = Object.fromEntries(first.failed.map((f) => [f.file.slice(-3), f.reason]));
    assert.deepEqual(Object.keys(reasons).sort(), Object.keys(EXPECTED).sort());
    for (const [n, expected] of Object.entries(EXPECTED)) {
      assert.match(reasons[n], expected, `lg23b002_${n}`);
      assert.ok(!reasons[n].includes('\n'), `one line: ${reasons[n]}`);
    }
    assert.ok(
      first.failed.every((f) => f.file.startsWith(join(daq, 'lg23b002', 'lg23b002_'))),
      'each failure names its file',
    );

    const doc = (await mesh.db.get<DaqDocument>('run_lg23b002_000')) as DaqDocument;
    assert.equal(doc.daq_host, 'daq7');
    assert.equal(doc.run_start, '2026-11-26T09:00:00Z');
    assert.deepEqual(doc.header, {
      magic: 'DAQ',
      run: 'lg23b002',
      file_number: '000',
      doc: 'run_lg23b002_000',
      bytes: CONTENTS['000'].length,
      channels: [1, 2, { off: null }],
    });
    assert.equal(doc.status, 'closed');
    assert.equal(doc.size_in_bytes, CONTENTS['000'].length);
    assert.match(String(doc.checksum?.sha256), /^[0-9a-f]{64}$/);
    assert.equal(doc.stdin_bytes, 0, 'stdin is closed');
    const envKeys = doc.env_keys as string[];
    assert.ok(envKeys.includes('PATH'));
    assert.deepEqual(
      envKeys.filter((k) => !['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR'].includes(k)),
      [],
      'a minimal environment, no credentials',
    );
    assert.equal(((await mesh.db.get<DaqDocument>('run_lg23b002_001')) as DaqDocument).daq_host, 'daq8');
    // What a program leaves running ends with it, and does not hold the run open until the timeout.
    assert.equal(((await mesh.db.get<DaqDocument>('run_lg23b002_008')) as DaqDocument).daq_host, 'daq6');
    const lingering = Number(await readFile(join(work, 'linger.pids'), 'utf8'));
    assert.ok(!running(lingering), `the child ${lingering} left by the program still runs`);
    for (const n of Object.keys(EXPECTED)) assert.equal(await mesh.db.get(`run_lg23b002_${n}`), undefined, `lg23b002_${n} is not catalogued, not even in part`);

    // The hanging program and the child it started are gone, and nothing else of the reader runs.
    const pids = (await readFile(join(work, 'hang.pids'), 'utf8')).trim().split(' ').map(Number);
    assert.equal(pids.length, 2);
    for (const pid of pids) assert.ok(!running(pid), `process ${pid} still runs`);
    assert.deepEqual(await processesRunning(script), []);
    const copies = (await readFile(join(work, 'running.log'), 'utf8')).trim().split('\n').map(Number);
    assert.equal(copies.length, Object.keys(CONTENTS).length, 'one run per new file');
    assert.ok(Math.max(...copies) <= 2, `at most two at once, saw ${Math.max(...copies)}`);

    // The next scan with the same program: the same files fail again, nothing is written twice.
    const second = await ingestWith('broken', { metadata_timeout_s: 1 });
    assert.equal(second.created, 0);
    assert.equal(second.already, 3);
    assert.equal(second.failed.length, Object.keys(EXPECTED).length);
    assert.equal(((await mesh.db.get<DaqDocument>('run_lg23b002_000')) as DaqDocument)._rev, doc._rev, 'a catalogued file is not read again');

    const fixed = await ingestWith('fixed');
    assert.deepEqual(fixed.failed, []);
    assert.equal(fixed.created, Object.keys(EXPECTED).length);
    assert.equal(fixed.already, 3);
    for (const n of Object.keys(EXPECTED)) {
      const late = (await mesh.db.get<DaqDocument>(`run_lg23b002_${n}`)) as DaqDocument;
      assert.equal(late.daq_host, 'daq9', n);
      assert.equal(late.status, 'closed', n);
      assert.deepEqual(
        late.history.map((h) => [h.from, h.to]),
        [[null, 'closed']],
        n,
      );
    }
    assert.deepEqual(await processesRunning(script), []);
  });

  it('a program that is not there: every new file fails with that reason, and no document is written', async () => {
    const { mesh, daq, ingestWith } = await setUp();
    await writeFile(join(daq, 'lg23b002', 'lg23b002_000'), CONTENTS['000']);
    await writeFile(join(daq, 'lg23b002', 'lg23b002_000.closed'), '');
    const report = await ingestWith('fixed', { metadata: [join(mesh.dir, 'no-such-reader'), '{file}'] });
    assert.equal(report.created, 0);
    assert.equal(report.failed.length, 1);
    assert.match(
      report.failed[0].reason,
      /^metadata program ".*no-such-reader" could not be started: failed to execute .*no-such-reader: No such file or directory$/,
    );
    assert.equal(await mesh.db.get('run_lg23b002_000'), undefined);
  });

  it('mesh ingest shows each failed file and its reason, and --json lists them', async () => {
    const { mesh, daq, work, script } = await setUp();
    for (const n of ['000', '004']) {
      await writeFile(join(daq, 'lg23b002', `lg23b002_${n}`), CONTENTS[n]);
      await writeFile(join(daq, 'lg23b002', `lg23b002_${n}.closed`), '');
    }
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    raw.ingest.metadata = [process.execPath, script, '{file}', '{run_name}', '{file_number}', '{doc_id}', work, 'broken'];
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const result = await runMesh(['--config', mesh.configFile, 'ingest', daq, '--site', 'alpha', '--json']);
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as IngestReport;
    assert.equal(report.created, 1);
    assert.equal(report.failed.length, 1);
    assert.match(report.failed[0].file, /lg23b002_004$/);
    assert.match(report.failed[0].reason, EXPECTED['004']);
    const line = result.stderr.split('\n').find((l) => l.includes('not catalogued this scan'));
    assert.ok(line, result.stderr);
    assert.match(line, /lg23b002_004: metadata program .* exited with 3 \(stderr: reading header \| bad header magic\)/);
    assert.match(result.stderr, /"failed":1/);

    raw.ingest.metadata = '/opt/daq/bin/read-header {file}';
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const refused = await runMesh(['--config', mesh.configFile, 'ingest', daq, '--site', 'alpha']);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /ingest\.metadata is "\/opt\/daq\/bin\/read-header \{file\}", expected an argument vector of non-empty strings/);
  });
});
