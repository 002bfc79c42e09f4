import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/server-process.js';

const BENCH = join(repoRoot, 'dist', 'bench', 'main.js');

/** Runs the bench; past `timeoutMs` it is interrupted (SIGTERM: it stops what it started) and the run fails. */
function runBench(args: string[], timeoutMs: number, tmp?: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = tmp ? { ...process.env, TMPDIR: tmp } : process.env;
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
  this.timeout(240_000);

  it('--quick --skip-scale --json measures each figure and its baseline, and leaves nothing running', async () => {
    // Every temporary folder of the run (servers' data, sshd, Slurm, NATS) under one of ours.
    const tmp = await mkdtemp(join(tmpdir(), 'mesh-bench-test-'));
    const r = await runBench(['--quick', '--skip-scale', '--json'], 180_000, tmp).finally(async () => {
      assert.deepEqual(await processesUnder(tmp), [], 'a process started by the bench is still running');
    });
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const report = JSON.parse(r.stdout) as Report;
    for (const key of ['cpu', 'kernel', 'node', 'nats_server', 'sshd', 'slurm']) assert.ok(typeof report.machine[key] === 'string' && report.machine[key] !== '', `machine.${key}`);
    assert.ok(Number(report.machine.cores) >= 1);
    assert.deepEqual(report.sections.map((s) => s.command), ['pipeline', 'validate', 'latency', 'sftp'].map((name) => `node dist/bench/main.js --only ${name} --quick`).concat('node dist/bench/main.js --only page --page-docs 100000 --quick'));
    for (const section of report.sections) {
      for (const row of section.rows) {
        assert.doesNotMatch(`${row.value} ${row.baseline ?? ''} ${row.ratio ?? ''}`, /n\/a|NaN|undefined|Infinity/, `${section.command}: ${JSON.stringify(row)}`);
        // A figure with a baseline has a ratio computed from two finite measurements.
        if (row.baseline !== undefined) assert.match(row.ratio ?? '', /^\d+(\.\d+)?×$/, `${section.command}: ${JSON.stringify(row)}`);
      }
    }
    const [pipeline, validate, latency, sftp, page] = report.sections;
    assert.equal(pipeline.rows.filter((row) => /^pipeline steps\/s/.test(row.measure) && row.baseline).length, 3);
    assert.equal(validate.rows.filter((row) => / docs\/s$/.test(row.value) && row.ratio).length, 3, 'previous and current function against none, and against each other');
    for (const variant of ['CouchDB only', 'with NATS']) {
      for (const p of ['p50', 'p95']) assert.ok(latency.rows.some((row) => row.measure === `DAQ close → lyon proc1 started, ${p} (${variant})` && /replication/.test(row.baseline ?? '')), `${variant} ${p}`);
      assert.equal(latency.rows.filter((row) => row.measure.startsWith(`  ${variant}: `)).length, 4, 'four stages without Slurm');
    }
    assert.ok(latency.notes?.some((n) => /with NATS: 1 files.*NATS hints/.test(n)), 'the NATS variant really ran with NATS');
    assert.equal(sftp.rows.filter((row) => /^executor/.test(row.measure)).length, 4);
    assert.deepEqual(page.rows.map((row) => row.measure.replace(/ \(.*/, '')), ['first snapshot, every view index built', 'warm snapshot, median of 3', 'one write → the WebSocket message showing it, median of 5']);
    assert.ok(page.rows.every((row) => /\(2,000 docs\)$/.test(row.measure) && /\(0 docs\)$/.test(row.baseline ?? '')), 'the page section compared 2,000 documents with none');
    assert.match(r.stderr, /\[bench +[\d.]+ s sftp\] repetition 1\/1/, 'progress lines on stderr');
    assert.deepEqual(await readdir(tmp), [], 'the bench left temporary folders behind');
    await rm(tmp, { recursive: true, force: true });
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
