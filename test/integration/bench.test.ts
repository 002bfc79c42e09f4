import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, startServerProcess } from '../support/server-process.js';

const BENCH = join(repoRoot, 'dist', 'bench', 'main.js');

/** Runs the bench; past `timeoutMs` it is interrupted (SIGTERM: it stops what it started) and the run fails. */
function runBench(
  args: string[],
  timeoutMs: number,
  tmp?: string,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...(tmp ? { TMPDIR: tmp } : {}), ...extraEnv };
    const child = spawn(process.execPath, [BENCH, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`bench ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stderr.slice(-2000)}`));
      else resolve({ status, stdout, stderr });
    });
  });
}

/** Processes whose command line names a folder under `tmp` (the servers, sshd, Slurm, NATS the bench started there). */
async function processesUnder(tmp: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(tmp)) found.push(`${pid}: ${cmdline.replace(/\0/g, ' ')}`);
  }
  return found;
}

interface Report {
  machine: Record<string, unknown>;
  sections: Array<{ title: string; command: string; rows: Array<{ measure: string; value: string; baseline?: string; ratio?: string }>; notes?: string[] }>;
}

describe('npm run bench: every section runs in a tiny configuration (no timing asserted)', function () {
  // Hang guards only (no timing is asserted): a loaded machine may take minutes.
  this.timeout(420_000);

  it('--quick --skip-scale --json measures each figure and its baseline, and leaves nothing running', async () => {
    // Every temporary folder of the run (servers' data, sshd, Slurm, NATS) under one of ours.
    const tmp = await mkdtemp(join(tmpdir(), 'mesh-bench-test-'));
    const r = await runBench(['--quick', '--skip-scale', '--json'], 360_000, tmp).finally(async () => {
      assert.deepEqual(await processesUnder(tmp), [], 'a process started by the bench is still running');
    });
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const report = JSON.parse(r.stdout) as Report;
    for (const key of ['cpu', 'kernel', 'node', 'nats_server', 'sshd', 'slurm'])
      assert.ok(typeof report.machine[key] === 'string' && report.machine[key] !== '', `machine.${key}`);
    assert.ok(Number(report.machine.cores) >= 1);
    assert.deepEqual(
      report.sections.map((s) => s.command),
      ['pipeline', 'validate', 'latency', 'sftp']
        .map((name) => `node dist/bench/main.js --only ${name} --quick`)
        .concat('node dist/bench/main.js --only page --page-docs 100000 --quick'),
    );
    for (const section of report.sections) {
      for (const row of section.rows) {
        assert.doesNotMatch(
          `${row.value} ${row.baseline ?? ''} ${row.ratio ?? ''}`,
          /n\/a|NaN|undefined|Infinity/,
          `${section.command}: ${JSON.stringify(row)}`,
        );
        // A figure with a baseline has a ratio computed from two finite measurements.
        if (row.baseline !== undefined) assert.match(row.ratio ?? '', /^\d+(\.\d+)?×$/, `${section.command}: ${JSON.stringify(row)}`);
      }
    }
    const [pipeline, validate, latency, sftp, page] = report.sections;
    // Concurrency 1, 4, 16 and 64.
    assert.equal(pipeline.rows.filter((row) => /^pipeline steps\/s/.test(row.measure) && row.baseline).length, 4);
    assert.ok(
      pipeline.rows.some((row) => /^_bulk_docs updates, the generated validate_doc_update/.test(row.measure) && row.ratio),
      'the generated validator against a one-line one',
    );
    // A /bin/true step ends long before a third of its lease: the claim (which is the start) and the result, nothing else.
    const writes = pipeline.rows.filter((row) => /^validated writes per step/.test(row.measure));
    assert.equal(writes.length, 4);
    for (const row of writes) assert.match(row.value, /^2\.\d\d \(documents 2\.00: \d+ × 2; heartbeats \d+\)$/, row.value);
    assert.ok(
      pipeline.rows.some((row) => /^heartbeat writes per idle minute/.test(row.measure) && row.ratio),
      'idle heartbeats counted',
    );
    assert.equal(
      validate.rows.filter((row) => / docs\/s$/.test(row.value) && row.ratio).length,
      3,
      'previous and current function against none, and against each other',
    );
    for (const variant of ['CouchDB only', 'with NATS']) {
      for (const p of ['p50', 'p95'])
        assert.ok(
          latency.rows.some((row) => row.measure === `DAQ close → lyon proc1 started, ${p} (${variant})` && /replication/.test(row.baseline ?? '')),
          `${variant} ${p}`,
        );
      assert.equal(latency.rows.filter((row) => row.measure.startsWith(`  ${variant}: `)).length, 6, 'six stages without Slurm');
      assert.ok(latency.rows.some((row) => row.measure === `hand-over to lyon: proc0 done → proc1 started, p50 (${variant})` && row.ratio));
    }
    assert.deepEqual(
      latency.rows.filter((row) => / `node -e 0`$/.test(row.baseline ?? '')).map((row) => row.measure.trim().split(' ').slice(0, 2).join(' ')),
      ['`mesh --help`', '`mesh agent', '`mesh run-batch'],
      'the hand-over commands against a bare node, measured in the same run',
    );
    assert.ok(
      latency.notes?.some((n) => /with NATS: 1 files.*NATS hints/.test(n)),
      'the NATS variant really ran with NATS',
    );
    assert.equal(sftp.rows.filter((row) => /^executor/.test(row.measure)).length, 4);
    assert.deepEqual(
      page.rows.map((row) => row.measure.replace(/ \(.*/, '')),
      ['first snapshot, every view index built', 'warm snapshot, median of 3', 'one write → the WebSocket message showing it, median of 5'],
    );
    assert.ok(
      page.rows.every((row) => /\(500 docs\)$/.test(row.measure) && /\(0 docs\)$/.test(row.baseline ?? '')),
      'the page section compared 500 documents with none',
    );
    assert.match(r.stderr, /\[bench +[\d.]+ s sftp\] repetition 1\/1/, 'progress lines on stderr');
    assert.deepEqual(await readdir(tmp), [], 'the bench left temporary folders behind');
    await rm(tmp, { recursive: true, force: true });
  });

  it('--server URL: the pipeline section against a server that requires accounts, credentials from COUCHDB_USER / COUCHDB_PASSWORD, its databases deleted', async () => {
    const user = 'bench-admin';
    const password = `bench-${randomBytes(8).toString('hex')}`;
    const server = await startServerProcess({ site: 'benchsecured', env: { MESH_BENCHSECURED_USER: user, MESH_BENCHSECURED_PASSWORD: password } });
    const auth = { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
    try {
      // Anonymous requests are refused: the agents the bench starts can only work with the credentials it hands them.
      assert.equal((await fetch(`${server.url}/bench_anonymous_probe`, { method: 'PUT' })).status, 401);
      const r = await runBench(['--only', 'pipeline', '--quick', '--json', '--server', server.url], 150_000, undefined, {
        COUCHDB_USER: user,
        COUCHDB_PASSWORD: password,
      });
      assert.equal(r.status, 0, r.stderr.slice(-3000));
      assert.ok(!r.stdout.includes(password) && !r.stderr.includes(password), 'the password is never printed');
      const [pipeline] = (JSON.parse(r.stdout) as Report).sections;
      assert.equal(pipeline.command, `node dist/bench/main.js --only pipeline --server ${server.url} --quick`);
      assert.match(pipeline.title, new RegExp(`on ${server.url.replace(/[.]/g, '\\.')} vs`));
      assert.equal(pipeline.rows.filter((row) => /^pipeline steps\/s/.test(row.measure) && /^\d+(\.\d+)?×$/.test(row.ratio ?? '')).length, 4);
      assert.ok(pipeline.notes?.some((n) => /the writer is the run's agent account/.test(n)));
      const dbs = (await (await fetch(`${server.url}/_all_dbs`, { headers: auth })).json()) as string[];
      assert.deepEqual(
        dbs.filter((name) => name.startsWith('bench_')),
        [],
        'the bench deleted the databases it created',
      );
      const accounts = (await (await fetch(`${server.url}/_users/_all_docs`, { headers: auth })).json()) as { rows: Array<{ id: string }> };
      assert.deepEqual(
        accounts.rows.filter((row) => row.id.startsWith('org.couchdb.user:bench-agent-')),
        [],
        'and the agent account',
      );
    } finally {
      await server.stop();
    }
    const refused = await runBench(['--only', 'pipeline', '--server', 'http://bench:secret@127.0.0.1:1'], 10_000);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /put no credentials in the URL: set COUCHDB_USER and COUCHDB_PASSWORD/);
  });

  it('prints the side-by-side table; refuses bad options with status 2', async () => {
    const text = await runBench(['--only', 'sftp', '--quick'], 60_000);
    assert.equal(text.status, 0, text.stderr.slice(-2000));
    assert.match(text.stdout, /^CouchMesh benchmark, /);
    assert.match(text.stdout, /^machine: .+ cores, .+ GiB RAM, Linux .+, Node v\d+/m);
    assert.match(text.stdout, /^ {2}executor transfer\(\), whole call vs `sftp -b` put +\d+ MB\/s +\d+ MB\/s sftp +[\d.]+×$/m);
    assert.doesNotMatch(text.stdout, /\[bench/, 'progress stays on stderr');

    const unknown = await runBench(['--only', 'pipeline,nope'], 10_000);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown section nope; the sections are pipeline, validate, latency, sftp, page, scale/);
    const docs = await runBench(['--scale-docs', '-5'], 10_000);
    assert.equal(docs.status, 2);
    assert.match(docs.stderr, /"-5" is not a positive number of documents/);
  });
});
