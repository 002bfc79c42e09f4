import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DaqDocument } from '../../core/document.js';
import { type ServerProcess, meshMain } from '../support/server-process.js';
import { makeMesh, runMesh, startAgent, serverForSuite, stopProcess, waitFor } from '../support/mesh.js';

describe('ingest, status and demo', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('ingest catalogues closed files once, leaves open ones, reports names it does not understand', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const daq = join(mesh.dir, 'daq', 'lg23b002');
    await mkdir(daq, { recursive: true });
    const old = new Date(Date.now() - 3600_000);
    for (const n of ['000', '001']) {
      await writeFile(join(daq, `lg23b002_${n}`), `data ${n}`);
      await utimes(join(daq, `lg23b002_${n}`), old, old);
    }
    await writeFile(join(daq, 'lg23b002_002'), 'still being written');
    await writeFile(join(daq, 'lg23b002_003'), 'closed by marker');
    await writeFile(join(daq, 'lg23b002_003.closed'), '');
    await writeFile(join(daq, 'notes.txt'), 'not a DAQ file');
    const first = await runMesh(['--config', mesh.configFile, 'ingest', join(mesh.dir, 'daq'), '--site', 'alpha', '--json']);
    assert.equal(first.status, 0, first.stderr);
    const report = JSON.parse(first.stdout.trim().split('\n').at(-1) as string);
    assert.equal(report.created, 3);
    assert.equal(report.open, 1);
    assert.equal(report.rejected.length, 1);
    assert.match(report.rejected[0].file, /notes\.txt$/);
    assert.match(first.stderr, /notes\.txt/);
    const doc = (await mesh.db.get<DaqDocument>('run_lg23b002_003')) as DaqDocument;
    assert.equal(doc.status, 'closed');
    assert.equal(doc.run_name, 'lg23b002');
    assert.equal(doc.file_number, 3);
    assert.equal(doc.size_in_bytes, 'closed by marker'.length);
    assert.equal(doc.checksum?.sha256, createHash('sha256').update('closed by marker').digest('hex'));
    const again = await runMesh(['--config', mesh.configFile, 'ingest', join(mesh.dir, 'daq'), '--site', 'alpha', '--json']);
    const second = JSON.parse(again.stdout.trim().split('\n').at(-1) as string);
    assert.equal(second.created, 0);
    assert.equal(second.already, 3);
    assert.equal((await mesh.db.get<DaqDocument>('run_lg23b002_003'))?._rev, doc._rev, 'a re-run writes nothing');
  });

  it('mesh status --json has the documented keys and the right numbers', async () => {
    const mesh = await makeMesh(server.url, {
      steps: ['proc0', 'proc1'],
      stepArgs: (s) => (s === 'proc1' ? ['--fail-until', '99', '--counter', '/dev/null'] : []),
      max_attempts: 1,
    });
    const daq = join(mesh.dir, 'daq');
    await mkdir(daq, { recursive: true });
    for (const n of ['000', '001', '002']) {
      await writeFile(join(daq, `lg23b002_${n}`), n);
      await writeFile(join(daq, `lg23b002_${n}.closed`), '');
    }
    assert.equal((await runMesh(['--config', mesh.configFile, 'ingest', daq, '--site', 'alpha'])).status, 0);
    const agent = startAgent(mesh, 'counted');
    await waitFor('all proc1 failed', async () => {
      const r = await runMesh(['--config', mesh.configFile, 'status', '--json']);
      const s = JSON.parse(r.stdout);
      return s.databases[0].steps.proc1.failed === 3 ? s : undefined;
    });
    await stopProcess(agent);
    const r = await runMesh(['--config', mesh.configFile, 'status', '--json']);
    const status = JSON.parse(r.stdout);
    const db = status.databases[0];
    assert.deepEqual(
      Object.keys(db)
        .filter((k) => ['site', 'url', 'reachable', 'doc_count', 'by_status', 'steps', 'conflicts'].includes(k))
        .sort(),
      ['by_status', 'conflicts', 'doc_count', 'reachable', 'site', 'steps', 'url'],
    );
    assert.equal(db.site, 'alpha');
    assert.equal(db.url, server.url);
    assert.equal(db.reachable, true);
    assert.equal(db.doc_count, 3);
    assert.deepEqual(db.by_status, { 'proc1 failed': 3 });
    assert.deepEqual(db.steps.proc0, { done: 3, ready: 0, queued: 0, in_progress: 0, failed: 0 });
    assert.deepEqual(db.steps.proc1, { done: 0, ready: 0, queued: 0, in_progress: 0, failed: 3 });
    assert.equal(db.failed.length, 3);
    assert.match(db.failed[0].reason, /exited with 3/);
    assert.equal(db.failed[0].exit_code, 3);
    assert.ok(status.agents.some((a: { agent: string; state: string }) => a.agent === 'counted' && a.state === 'stopped'));
    const text = await runMesh(['--config', mesh.configFile, 'status']);
    assert.match(text.stdout, /proc1\s+0\s+0\s+0\s+0\s+3/);
  });

  it('mesh status exits 0 when its server answered and 3 when it could not be read, with and without --json', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8')) as { sites: Record<string, { server: string }>; server_timeout_s?: number };
    const deadConfig = join(mesh.dir, 'dead.json');
    raw.sites.alpha.server = `http://127.0.0.1:${deadPort}`;
    await writeFile(deadConfig, JSON.stringify(raw));
    for (const json of [['--json'], []]) {
      const live = await runMesh(['--config', mesh.configFile, 'status', ...json]);
      assert.equal(live.status, 0, `status ${json.join(' ')} with a live server: ${live.stderr}`);
      const dead = await runMesh(['--config', deadConfig, 'status', ...json], {}, 60_000);
      assert.equal(dead.status, 3, `status ${json.join(' ')} with no server answering: ${dead.stdout.slice(0, 300)} ${dead.stderr}`);
      assert.match(dead.stdout, /UNREACHABLE|"reachable":false/);
    }
    const help = await runMesh(['status', '--help']);
    assert.match(help.stdout, /Exit status .*0 all well.*3 a server could not be read/s);
  });

  it('mesh status --watch refreshes until interrupted', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const child = spawn(process.execPath, [meshMain, '--config', mesh.configFile, 'status', '--watch', '--json', '--interval', '0.2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await waitFor('three refreshes', () => out.trim().split('\n').length >= 3, 20_000);
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    for (const line of out.trim().split('\n')) assert.equal(JSON.parse(line).databases[0].reachable, true);
  });

  it('an unreachable server is reported (JSON on stdout), and with no server answering the exit status is 3', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const raw = JSON.parse(await readFile(mesh.configFile, 'utf8'));
    raw.sites.alpha.server = 'http://127.0.0.1:9';
    await writeFile(mesh.configFile, JSON.stringify(raw));
    const r = await runMesh(['--config', mesh.configFile, 'status', '--json']);
    assert.equal(r.status, 3, r.stderr);
    const status = JSON.parse(r.stdout);
    assert.equal(status.databases[0].reachable, false);
  });

  it('mesh demo runs proc0..proc2 on sample files and prints the final status', async () => {
    const r = await runMesh(['demo', '--files', '12', '--json'], {}, 150_000);
    assert.equal(r.status, 0, r.stderr);
    const status = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
    assert.equal(status.databases[0].by_status.good, 12);
    for (const step of ['proc0', 'proc1', 'proc2']) assert.equal(status.databases[0].steps[step].done, 12);
  });
});
