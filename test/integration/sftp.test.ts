import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { transfer } from '../../agents/executors/sftp-transfer.js';
import { normaliseFingerprint } from '../../agents/executors/ssh-connect.js';
import { RemoteTrigger, RemoteTriggers, needsTrigger } from '../../agents/trigger.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SshTarget } from '../../config/types.js';
import { designDocument } from '../../couchapp/design.js';
import { pushDesign } from '../../store/designs.js';
import { sha256File } from '../../core/checksum.js';
import { Database } from '../../store/database.js';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { isMeshError } from '../../core/errors.js';
import { spawnMeshProcess, stopAllMeshProcesses, uniqueDatabase, waitFor } from '../support/mesh.js';
import { type ServerProcess, startServerProcess, stopAllServerProcesses } from '../support/server-process.js';
import { type TestSshd, fingerprint, makeKey, startSshd, stopAllSshd } from '../support/sshd.js';
import { testFolder } from '../support/folders.js';
import { historyTo } from '../../core/provenance.js';

/** Everything under `dir`, relative, sorted. */
async function listing(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

describe('SFTP transfer and remote trigger against a real sshd', function () {
  this.timeout(120_000);
  let sshd: TestSshd;
  let dir: string;
  let ssh: SshTarget;

  before(async () => {
    sshd = await startSshd();
    dir = await mkdtemp(join(tmpdir(), 'mesh-sftp-'));
    ssh = { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 };
  });
  afterEach(async () => {
    assert.equal(await stopAllMeshProcesses(), 0, 'a test left mesh processes running');
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
    assert.equal(await stopAllSshd(), 0, 'an sshd leaked');
  });

  it('normalises pinned fingerprints written with or without padding or prefix', () => {
    const pinned = sshd.hostKeySha256;
    const bare = pinned.slice('SHA256:'.length);
    const hex = Buffer.from(bare, 'base64').toString('hex');
    for (const form of [pinned, `${pinned}=`, bare, `sha256:${bare}=`, hex, ` ${pinned}\n`]) assert.equal(normaliseFingerprint(form), pinned, form);
    assert.equal(normaliseFingerprint('SHA256:tooshort'), undefined);
  });

  it('sends 20 MB that arrive with the same sha256, leaves no .part, records bytes and throughput', async () => {
    // Speed is measured by `npm run bench` (section sftp, against sftp and scp); here only correctness.
    const source = join(dir, 'big.bin');
    await writeFile(source, randomBytes(20 * 1024 * 1024));
    const remoteDir = join(dir, 'remote', 'raw', 'lg23b002');
    const target = join(remoteDir, 'lg23b002_000');
    const sent = await transfer({ source, target, ssh });
    const expected = await sha256File(source);
    assert.equal(sent.sha256, expected);
    assert.equal(await sha256File(target), expected);
    assert.equal(sent.bytes, 20 * 1024 * 1024);
    assert.equal(sent.verified_by, 'sha256sum');
    assert.ok(sent.seconds > 0 && sent.mbps > 0, 'throughput recorded');
    assert.deepEqual(await listing(remoteDir), ['lg23b002_000']);
  });

  it('lands a hostile target name literally: the remote sha256sum gets one single-quoted word', async () => {
    const source = join(dir, 'small.bin');
    await writeFile(source, randomBytes(4096));
    const remoteDir = join(dir, 'remote', `it's a "dir"`);
    const target = join(remoteDir, `x'; touch ${dir}/pwned; echo '$(touch ${dir}/pwned2)\`id\` \\n`);
    const sent = await transfer({ source, target, ssh });
    assert.equal(sent.verified_by, 'sha256sum');
    assert.equal(await sha256File(target), sent.sha256);
    assert.ok(!existsSync(join(dir, 'pwned')) && !existsSync(join(dir, 'pwned2')), 'nothing was executed');
    await assert.rejects(transfer({ source, target: `${target}\nsecond line`, ssh }), (error) => isMeshError(error, 'BAD_INPUT'));
  });

  it('refuses a host key that is not the pinned one, with a clear error, and writes nothing', async () => {
    const source = join(dir, 'small.bin');
    await writeFile(source, randomBytes(4096));
    const otherKey = await makeKey(testFolder('mesh-otherkey-'), 'impostor');
    const wrong = await fingerprint(`${otherKey}.pub`);
    const remoteDir = join(dir, 'remote', 'mismatch');
    const accepted = () => (sshd.output().match(/Accepted publickey/g) ?? []).length;
    const acceptedBefore = accepted();
    await assert.rejects(transfer({ source, target: join(remoteDir, 'file'), ssh: { ...ssh, host_key_sha256: wrong }, site: 'lyon' }), (error: unknown) => {
      assert.ok(isMeshError(error, 'SSH_HOST_KEY_MISMATCH'), String(error));
      assert.match(
        error.message,
        new RegExp(
          `host key mismatch for 127\\.0\\.0\\.1:${sshd.port}: expected ${wrong.replace(/[+/]/g, '\\$&')} \\(sites\\.lyon\\.ssh\\.host_key_sha256\\), got ${sshd.hostKeySha256.replace(/[+/]/g, '\\$&')}`,
        ),
      );
      assert.match(error.message, /nothing was sent or written/);
      assert.match(error.message, /ssh-keygen -lf/);
      return true;
    });
    assert.equal(existsSync(remoteDir), false, 'not even the directory was created');
    assert.equal(accepted(), acceptedBefore, 'no authentication happened');
  });

  it('an aborted transfer, a shrinking source, a wrong checksum leave nothing under the final name', async () => {
    const source = join(dir, 'abort.bin');
    const remoteDir = join(dir, 'remote', 'interrupted');
    const target = join(remoteDir, 'file');

    await writeFile(source, randomBytes(20 * 1024 * 1024));
    const controller = new AbortController();
    await assert.rejects(
      transfer({ source, target, ssh, signal: controller.signal, onProgress: (bytes) => bytes > 4 * 1024 * 1024 && controller.abort() }),
      (error) => isMeshError(error, 'ABORTED'),
    );
    assert.deepEqual(await listing(remoteDir), [], 'aborted: no file, no .part');

    let truncated = false;
    const shrink = (bytes: number) => {
      if (bytes > 2 * 1024 * 1024 && !truncated) {
        truncated = true;
        void truncate(source, 3 * 1024 * 1024);
      }
    };
    await assert.rejects(
      transfer({ source, target, ssh, onProgress: shrink }),
      (error: unknown) => isMeshError(error, 'TRANSFER_FAILED') && /changed while it was sent/.test(error.message),
    );
    assert.deepEqual(await listing(remoteDir), [], 'source shrank: no file, no .part');

    await assert.rejects(
      transfer({ source, target, ssh, expectedSha256: '0'.repeat(64) }),
      (error: unknown) => isMeshError(error, 'TRANSFER_FAILED') && /the document records/.test(error.message),
    );
    assert.deepEqual(await listing(remoteDir), [], 'wrong checksum: no file, no .part');

    // A stale .part from a connection that died is replaced; an existing final file is replaced atomically.
    await writeFile(`${target}.part`, 'stale');
    await writeFile(target, 'old');
    const sent = await transfer({ source, target, ssh });
    assert.equal(await sha256File(target), sent.sha256);
    assert.deepEqual(await listing(remoteDir), ['file']);
  });

  describe('with an embedded server', () => {
    let server: ServerProcess;
    before(async () => {
      server = await startServerProcess();
    });
    after(async () => {
      await server?.stop();
      await stopAllServerProcesses();
    });

    it('an agent runs an sftp step end to end: good, checksum, bytes and throughput recorded', async () => {
      const work = await mkdtemp(join(dir, 'e2e-'));
      const storage = join(work, 'lyon-storage');
      const raw = {
        database: uniqueDatabase('sftp'),
        doc_type: 'daqdocument',
        sites: {
          alpha: { server: server.url, reachable: false, long_running: true, log_dir: join(work, 'logs') },
          beta: { server: server.url, reachable: true, long_running: false, storage, ssh: { ...ssh } },
        },
        ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]{2}\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
        steps: [
          {
            name: 'proc0',
            site: 'alpha',
            executor: 'sftp',
            to: 'beta',
            out: join(storage, '{run_name}', '{run_name}_{file_number}'),
            timeout_s: 60,
            max_attempts: 1,
            lease_s: 10,
          },
        ],
        agent: { sweep_s: 1, heartbeat_s: 1, retry_base_s: 0.2, retry_cap_s: 1, grace_s: 5 },
      };
      const configFile = join(work, 'mesh.json');
      await writeFile(configFile, JSON.stringify(raw, null, 2));
      const config = parseMeshConfig(raw, configFile);
      const db = new Database({ url: server.url, database: config.database });
      await db.ensure();
      await pushDesign(db, designDocument(config));

      await mkdir(join(work, 'daq'));
      const good = join(work, 'daq', 'lg23b002_000');
      const tampered = join(work, 'daq', 'lg23b002_001');
      await writeFile(good, randomBytes(3 * 1024 * 1024));
      await writeFile(tampered, randomBytes(1024));
      const base = { type: 'daqdocument', run_name: 'lg23b002', date_closed: new Date().toISOString(), status: 'closed', history: historyTo('closed', []) };
      await db.bulk([
        { ...base, _id: 'run_lg23b002_000', file_number: 0, file: good, size_in_bytes: 3 * 1024 * 1024, checksum: { sha256: await sha256File(good) } },
        { ...base, _id: 'run_lg23b002_001', file_number: 1, file: tampered, size_in_bytes: 1024, checksum: { sha256: 'f'.repeat(64) } },
      ]);

      const agent = spawnMeshProcess(['--config', configFile, 'agent', '--site', 'alpha', '--once', '--name', 'modane-test'], {
        logFile: join(work, 'agent.log'),
      });
      const [code] = await new Promise<[number | null]>((resolve) => agent.once('exit', (c) => resolve([c])));
      assert.equal(code, 0, await readFile(join(work, 'agent.log'), 'utf8'));

      const doc = (await db.get<DaqDocument>('run_lg23b002_000')) as DaqDocument;
      assert.equal(doc.status, 'good', JSON.stringify(doc));
      const record = stepRecord(doc, 'proc0') as StepRecord;
      const landed = join(storage, 'lg23b002', 'lg23b002_000');
      assert.equal(record.ok, true);
      assert.equal(record.file, landed);
      assert.equal(record.checksum?.sha256, doc.checksum?.sha256);
      assert.equal(await sha256File(landed), doc.checksum?.sha256);
      assert.equal(record.bytes, 3 * 1024 * 1024);
      assert.ok(typeof record.throughput_mbps === 'number' && record.throughput_mbps > 0, `throughput_mbps ${record.throughput_mbps}`);

      const bad = (await db.get<DaqDocument>('run_lg23b002_001')) as DaqDocument;
      assert.equal(bad.status, 'proc0 failed');
      assert.match(String((stepRecord(bad, 'proc0') as StepRecord).reason), /the document records f{64}/);
      assert.deepEqual(await listing(join(storage, 'lg23b002')), ['lg23b002_000'], 'the refused file left nothing behind');
    });
  });

  it('the trigger runs the remote agent over SSH at once when idle, once more for the pokes during a run', async () => {
    const work = await mkdtemp(join(dir, 'trigger-'));
    const runLog = join(work, 'runs.log');
    const fakeMesh = join(work, 'fake mesh.sh');
    await writeFile(
      fakeMesh,
      [
        '#!/bin/sh',
        `echo "start $(date +%s%3N) $*" >> '${runLog}'`,
        `echo '{"level":40,"time":1,"pid":1,"msg":"remote says hello","site":"beta"}' >&2`,
        'echo "plain stdout line"',
        'sleep 0.8',
        `echo "end $(date +%s%3N)" >> '${runLog}'`,
        '',
      ].join('\n'),
    );
    await chmod(fakeMesh, 0o755);
    const config: MeshConfig = parseMeshConfig(
      {
        database: 'trigger_test',
        doc_type: 'daqdocument',
        sites: {
          alpha: { server: 'http://127.0.0.1:1', reachable: false, long_running: true },
          beta: { server: 'http://127.0.0.1:1', reachable: true, long_running: false, storage: work, ssh: { ...ssh }, mesh: [fakeMesh] },
        },
        ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]+)_(?<file_number>\\d+)$', quiet_s: 1 },
        steps: [
          { name: 'proc0', site: 'alpha', executor: 'sftp', to: 'beta', out: join(work, '{run_name}_{file_number}') },
          { name: 'proc1', site: 'beta', run: ['true'], out: join(work, '{run_name}_{file_number}.root') },
        ],
      },
      join(work, 'mesh.json'),
    );
    assert.deepEqual(needsTrigger(config, 'beta'), [], 'a site that may not live for ever triggers nobody');
    const [target] = needsTrigger(config, 'alpha');
    assert.equal(target.site.name, 'beta');
    assert.deepEqual(target.steps, ['proc1']);

    const { logger, lines } = capturingLogger();
    const trigger = new RemoteTrigger({ target, logger, intervalMs: 1500 });
    const runs = async () => (existsSync(runLog) ? (await readFile(runLog, 'utf8')).split('\n').filter(Boolean) : []);

    // The first poke finds the trigger idle and runs at once; the four during that run make one more.
    for (let i = 0; i < 5; i++) {
      trigger.poke();
      await new Promise((r) => setTimeout(r, 40));
    }
    await trigger.whenIdle();
    const lines2 = await runs();
    assert.deepEqual(
      lines2.map((l) => l.split(' ')[0]),
      ['start', 'end', 'start', 'end'],
      'one run at a time, exactly one re-run for the pokes during the first',
    );
    assert.match(lines2[0], /^start \d+ agent --site beta --once$/);
    const due = lines.filter((l) => l.msg === 'remote run due').map((l) => Number(l.time));
    assert.equal(due.length, 2);
    // Log times are taken just after each start: a millisecond or two later than the start itself.
    assert.ok(due[1] - due[0] >= 1500 - 2, `runs start at least the interval apart (${due[1] - due[0]} ms)`);
    assert.deepEqual(trigger.counters, { runs: 2, failures: 0, pokes: 5 });

    const relayed = lines.filter((l) => l.trigger === 'beta');
    assert.ok(
      relayed.some((l) => l.msg === 'remote says hello' && l.level === 40 && (l.remote as { site?: string }).site === 'beta'),
      'remote JSON log lines keep their level and message',
    );
    assert.ok(relayed.some((l) => l.msg === 'plain stdout line' && l.stream === 'stdout'));

    // A document ready for proc1 (owned by beta) pokes beta's trigger through RemoteTriggers.
    const triggers = new RemoteTriggers(config, 'alpha', logger, { intervalMs: 0 });
    const ready = {
      _id: 'x_1',
      type: 'daqdocument',
      run_name: 'x',
      file_number: 1,
      file: '/x',
      size_in_bytes: 0,
      date_closed: '',
      status: 'good',
      history: [],
      proc0: { attempts: 1, ok: true },
    } as unknown as DaqDocument;
    triggers.offer([ready, { ...ready, status: 'closed', proc0: undefined } as unknown as DaqDocument], new Date());
    const beta = triggers.triggers.get('beta') as RemoteTrigger;
    assert.equal(beta.counters.pokes, 1, 'only the document ready for proc1 pokes beta');
    await beta.whenIdle();
    assert.equal((await runs()).length, 6);

    // stop() is idempotent, ends a running remote agent, and later pokes do nothing.
    beta.poke();
    await waitFor('a run to start', async () => (await runs()).length === 7, 10_000, 20);
    const stopping = triggers.stop();
    await stopping;
    await trigger.stop();
    assert.equal(await trigger.stop(), undefined);
    beta.poke();
    assert.equal(beta.state, 'stopped');
    assert.equal(beta.counters.runs, 2);
  });
});
