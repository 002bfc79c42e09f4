/**
 * `mesh deploy` on a generic three-site mesh (alpha: long-running, unreachable, ingest and
 * coordinator; beta: a server only; gamma: a batch site without long-lived processes, on beta's
 * server, woken by alpha over SSH). The units pass `systemd-analyze verify` (and a broken one does
 * not); no file holds a password; what is missing is named; and the authorized_keys line, installed
 * in a real sshd, lets alpha's key run the trigger's pass (and SFTP when a transfer lands there)
 * and nothing else: no other command, no port forwarding.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Client } from 'ssh2';
import { execRemote, remoteCommandLine } from '../../agents/executors/remote-exec.js';
import { transfer } from '../../agents/executors/sftp-transfer.js';
import { connectSsh } from '../../agents/executors/ssh-connect.js';
import { RemoteTrigger, needsTrigger, remoteAgentArgv } from '../../agents/trigger.js';
import { deploySite } from '../../cli/deploy/deploy.js';
import { writeDeployFiles } from '../../cli/deploy/files.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SshTarget } from '../../config/types.js';
import { type MeshErrorCode, isMeshError } from '../../core/errors.js';
import { silentLogger } from '../../core/log.js';
import { sha256File } from '../../core/checksum.js';
import { meshSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { runMesh } from '../support/mesh.js';
import { meshMain } from '../support/server-process.js';
import { type TestSshd, makeKey, startSshd, stopAllSshd } from '../support/sshd.js';

const run = promisify(execFile);
const PASSWORD = `pw-${Math.random().toString(36).slice(2)}-never-in-a-file`;

interface Options {
  ssh?: SshTarget;
  /** t0 is alpha's SFTP transfer to gamma (else a local command). */
  sftp?: boolean;
  gammaMesh?: string[];
  alphaMesh?: string[];
  coordinator?: string;
}

function rawConfig(dir: string, options: Options = {}) {
  const ssh = options.ssh ?? {
    host: '127.0.0.1',
    port: 22,
    user: 'farm',
    identity_file: join(dir, 'no-such-key'),
    host_key_sha256: `SHA256:${'A'.repeat(43)}`,
  };
  return {
    database: 'deploydb',
    doc_type: 'daqdocument',
    sites: {
      alpha: {
        server: 'http://127.0.0.1:5984',
        reachable: false,
        long_running: true,
        may_run: ['t0'],
        storage: join(dir, 'daq'),
        log_dir: join(dir, 'logs', 'alpha'),
        mesh: options.alphaMesh ?? [process.execPath, meshMain, '--config', join(dir, 'mesh.json')],
      },
      beta: { server: 'http://127.0.0.1:5985', reachable: true, long_running: true, log_dir: join(dir, 'logs', 'beta') },
      gamma: {
        server: 'http://127.0.0.1:5985',
        reachable: true,
        long_running: false,
        credentials_of: 'beta',
        may_run: ['t1'],
        storage: join(dir, 'gamma'),
        ssh,
        batch: { system: 'slurm', options: ['--time=10'], docs_per_job: 5, mesh: ['/opt/couchmesh/bin/mesh'] },
        log_dir: join(dir, 'logs', 'gamma'),
        mesh: options.gammaMesh ?? [
          '/usr/bin/env',
          'MESH_BETA_USER=gamma-agent',
          'MESH_BETA_PASSWORD_FILE=/home/farm/gamma.password',
          '/opt/couchmesh/bin/mesh',
          '--config',
          '/opt/couchmesh/mesh.json',
        ],
      },
    },
    ingest: { site: 'alpha', pattern: '^(?<run_name>[a-z]+)_(?<file_number>\\d+)$', quiet_s: 1 },
    steps: [
      options.sftp
        ? { name: 't0', site: 'alpha', executor: 'sftp', to: 'gamma', out: join(dir, 'gamma', 'raw', '{run_name}_{file_number}') }
        : { name: 't0', site: 'alpha', run: ['/bin/cp', '{file}', '{out}'], out: join(dir, 'alpha-out', '{run_name}_{file_number}') },
      { name: 't1', site: 'gamma', run: ['/bin/true', '{prev_out}', '{out}'], out: join(dir, 'gamma', 'done', '{run_name}_{file_number}') },
    ],
    coordinator: { site: options.coordinator ?? 'alpha', interval_s: 5 },
  };
}

function configOf(dir: string, options: Options = {}): MeshConfig {
  return parseMeshConfig(rawConfig(dir, options), join(dir, 'mesh.json'));
}

/** What `systemd-analyze verify` says about the units: nothing when they are sound (it warns on stderr without failing). */
async function verifyUnits(files: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('systemd-analyze', ['verify', '--man=no', ...files]);
    return `${stdout}${stderr}`.trim();
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error("systemd-analyze is missing: install Debian's systemd (apt-get install systemd) to run this test");
    return `exit ${String(e.code)}: ${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
  }
}

async function allFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('mesh deploy', function () {
  this.timeout(60_000);
  let dir: string;
  let publicKey: string;

  before(async () => {
    dir = testFolder('mesh-deploy-');
    const key = await makeKey(dir, 'alpha_to_gamma');
    publicKey = `${key}.pub`;
    await writeFile(join(dir, 'mesh.json'), JSON.stringify(rawConfig(dir)));
  });

  it('writes units for every long-lived process of a site that passes systemd-analyze verify, and a broken one does not', async () => {
    const deployment = deploySite(configOf(dir), 'alpha', { version: '0.0.0-test' });
    const out = join(dir, 'out-alpha');
    await writeDeployFiles(out, deployment.files, false);
    const units = deployment.files.filter((f) => f.path.endsWith('.service')).map((f) => join(out, f.path));
    assert.deepEqual(
      units.map((u) => u.split('/').pop()),
      ['couchmesh-alpha-coordinator.service', 'couchmesh-alpha-ingest.service', 'couchmesh-alpha-agent.service'],
    );
    assert.equal(await verifyUnits(units), '', 'systemd-analyze verify is silent on the units');
    // The check can fail: a misspelt key and a bad value are what it must catch.
    const broken = join(dir, 'broken', 'couchmesh-alpha-agent.service');
    await mkdir(join(dir, 'broken'));
    const agentUnit = await readFile(units[2], 'utf8');
    await writeFile(broken, agentUnit.replace('RestartSec=10s', 'RestartSecs=10s'));
    assert.match(await verifyUnits([broken]), /Unknown key 'RestartSecs'/);
    await writeFile(broken, agentUnit.replace(`ExecStart=${process.execPath}`, 'ExecStart=/nonexistent/node'));
    assert.match(await verifyUnits([broken]), /not executable/);

    assert.match(agentUnit, new RegExp(`^ExecStart=${process.execPath} ${meshMain} --config ${join(dir, 'mesh.json')} agent --site alpha$`, 'm'));
    for (const line of ['Restart=on-failure', 'RestartPreventExitStatus=2', 'KillMode=mixed', 'EnvironmentFile=/etc/couchmesh/couchmesh-alpha-agent.env'])
      assert.ok(agentUnit.split('\n').includes(line), line);
    const ingest = await readFile(units[1], 'utf8');
    assert.match(ingest, new RegExp(`ingest ${join(dir, 'daq')} --site alpha --watch$`, 'm'));
    const coordinatorEnv = await readFile(join(out, 'env', 'couchmesh-alpha-coordinator.env'), 'utf8');
    // The coordinator: the admin of both servers, and the replication account on both.
    for (const name of ['MESH_ALPHA_USER', 'MESH_ALPHA_PASSWORD_FILE', 'MESH_BETA_USER', 'MESH_ALPHA_REPLICATION_USER', 'MESH_BETA_REPLICATION_PASSWORD_FILE'])
      assert.match(coordinatorEnv, new RegExp(`^${name}=\\S+$`, 'm'), name);
    assert.doesNotMatch(coordinatorEnv, /^MESH_\w+_PASSWORD=/m, 'password files only');
  });

  it('writes the fallback cron line, the job script template and the server settings, each from the profiles', async () => {
    const config = configOf(dir);
    const gamma = deploySite(config, 'gamma', { version: '0.0.0-test', publicKey, everyMinutes: 10 });
    const byPath = new Map(gamma.files.map((f) => [f.path, f.content]));
    assert.deepEqual([...byPath.keys()].sort(), ['README.md', 'batch/job-script.sh.template', 'cron/crontab', 'cron/scrontab', 'ssh/authorized_keys']);
    const pass = remoteCommandLine(remoteAgentArgv(config.sites.gamma));
    const cronLine = (byPath.get('cron/crontab') ?? '').split('\n').find((l) => !l.startsWith('#') && l.trim());
    assert.equal(cronLine, `*/10 * * * * ${pass} >> '${join(dir, 'logs', 'gamma', 'once.log')}' 2>&1`);
    assert.match(byPath.get('cron/scrontab') ?? '', /^#SCRON --job-name=mesh-gamma-once$/m);
    assert.match(
      byPath.get('batch/job-script.sh.template') ?? '',
      /^exec '\/opt\/couchmesh\/bin\/mesh' '--config' '\/opt\/couchmesh\/mesh.json' 'run-batch' '<JOBFILE>' '--site' 'gamma'$/m,
    );
    assert.equal(gamma.notes.length, 0, 'gamma.mesh carries its account');

    const beta = deploySite(config, 'beta', { version: '0.0.0-test' });
    const files = new Map(beta.files.map((f) => [f.path, f.content]));
    assert.deepEqual([...files.keys()].sort(), ['README.md', 'server/accounts.sh', 'server/replication.json', 'server/security.json']);
    assert.deepEqual(JSON.parse(files.get('server/security.json') ?? ''), meshSecurity(['alpha', 'beta', 'gamma']));
    assert.deepEqual(
      (files.get('server/accounts.sh') ?? '').split('\n').filter((l) => l.startsWith('mesh ')),
      [
        "mesh users add 'gamma-agent' --role agent --site 'gamma' --server 'beta'",
        "mesh users add 'coordinator' --role coordinator --server 'beta'",
        "mesh users add 'operator' --role operator --server 'beta'",
      ],
    );
    const replication = JSON.parse(files.get('server/replication.json') ?? '') as { jobs: Array<{ from: string; to: string; held_by: string }> };
    assert.deepEqual(
      replication.jobs.map((j) => `${j.from}>${j.to}@${j.held_by}`),
      ['alpha>beta@alpha', 'beta>alpha@alpha'],
      'nobody connects to alpha: it holds both jobs',
    );
    assert.match(files.get('README.md') ?? '', /must accept connections from alpha/);
  });

  it('names what is missing instead of writing something that cannot work', async () => {
    const refused = (fn: () => unknown, code: MeshErrorCode, pattern: RegExp) =>
      assert.throws(fn, (error: unknown) => isMeshError(error, code) && pattern.test((error as Error).message));
    refused(() => deploySite(configOf(dir, { alphaMesh: ['mesh'] }), 'alpha', { version: '0' }), 'CONFIG_INVALID', /sites\.alpha\.mesh is not set/);
    refused(() => deploySite(configOf(dir, { alphaMesh: ['bin/mesh'] }), 'alpha', { version: '0' }), 'CONFIG_INVALID', /absolute path/);
    refused(
      () => deploySite(configOf(dir, { coordinator: 'gamma' }), 'gamma', { version: '0', publicKey }),
      'CONFIG_INVALID',
      /coordinator\.site is gamma, .*long_running: false/,
    );
    refused(() => deploySite(configOf(dir), 'gamma', { version: '0' }), 'BAD_INPUT', /no-such-key\.pub.*--public-key/);
    refused(() => deploySite(configOf(dir), 'gamma', { version: '0', publicKey: join(dir, 'alpha_to_gamma') }), 'BAD_INPUT', /is a private key/);
    refused(() => deploySite(configOf(dir), 'nowhere', { version: '0' }), 'CONFIG_INVALID', /expected one of: alpha, beta, gamma/);
    // A --once site whose command carries no account is deployed, with a note saying so.
    const bare = deploySite(configOf(dir, { gammaMesh: ['/opt/couchmesh/bin/mesh'] }), 'gamma', { version: '0', publicKey });
    assert.match(bare.notes[0], /sets no MESH_BETA_USER/);
    await assert.rejects(
      writeDeployFiles(join(dir, 'out-alpha'), [], false),
      (error: unknown) => isMeshError(error, 'BAD_INPUT') && /--force/.test(String(error)),
    );
  });

  it('as a command: writes the files, none holds a password from its environment, --help lists deploy and doctor', async () => {
    const out = join(dir, 'cli-out');
    const env = { MESH_ALPHA_USER: 'admin', MESH_ALPHA_PASSWORD: PASSWORD, MESH_BETA_PASSWORD: PASSWORD };
    const [help, missing, ...deployed] = await Promise.all([
      runMesh(['--help']),
      runMesh(['--config', join(dir, 'mesh.json'), 'deploy', '--site', 'gamma', '--out', join(out, 'nokey')]),
      ...['alpha', 'beta', 'gamma'].map((site) =>
        runMesh(['--config', join(dir, 'mesh.json'), 'deploy', '--site', site, '--out', join(out, site), '--public-key', publicKey], env),
      ),
    ]);
    for (const result of deployed) {
      assert.equal(result.status, 0, result.stderr);
      assert.ok(
        result.stdout
          .split('\n')
          .filter(Boolean)
          .every((p) => existsSync(p)),
        'it prints the files it wrote',
      );
    }
    for (const file of await allFiles(out)) assert.ok(!(await readFile(file, 'utf8')).includes(PASSWORD), `${file} holds no password`);
    assert.match(help.stdout, /^\s+deploy \[options\]/m);
    assert.match(help.stdout, /^\s+doctor \[options\]/m);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--public-key FILE/);
  });

  describe('the authorized_keys line, in a real sshd', function () {
    let sshd: TestSshd;
    let work: string;
    let ssh: SshTarget;
    let runLog: string;
    let fakeMesh: string;
    let plainLine: string;

    before(async () => {
      sshd = await startSshd({ allowTcpForwarding: true });
      work = testFolder('mesh deploy ssh ');
      runLog = join(work, 'runs.log');
      fakeMesh = join(work, 'fake mesh.sh');
      await writeFile(fakeMesh, ['#!/bin/sh', `echo "pass $* [$SSH_ORIGINAL_COMMAND]" >> '${runLog}'`, `echo '{"level":30,"msg":"pass done"}'`, ''].join('\n'));
      await chmod(fakeMesh, 0o755);
      ssh = { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 };
      plainLine = await readFile(join(sshd.dir, 'authorized_keys'), 'utf8');
      await copyFile(`${sshd.identityFile}.pub`, join(work, 'alpha.pub'));
    });
    after(async () => {
      await sshd?.stop();
      assert.equal(await stopAllSshd(), 0, 'an sshd leaked');
    });

    async function install(config: MeshConfig): Promise<string> {
      const deployment = deploySite(config, 'gamma', { version: '0', publicKey: join(work, 'alpha.pub') });
      const line = deployment.files.find((f) => f.path === 'ssh/authorized_keys')?.content ?? '';
      await writeFile(join(sshd.dir, 'authorized_keys'), line, { mode: 0o600 });
      return line;
    }
    const runs = async () => (existsSync(runLog) ? (await readFile(runLog, 'utf8')).split('\n').filter(Boolean) : []);
    async function exec(client: Client, argv: string[]) {
      const lines: string[] = [];
      const outcome = await execRemote(client, argv, { timeoutMs: 10_000, onLine: (stream, line) => lines.push(`${stream}: ${line}`) });
      return { code: outcome.exit_code, output: lines.join('\n') };
    }
    async function forward(client: Client): Promise<string> {
      return new Promise((resolve) =>
        client.forwardOut('127.0.0.1', 0, '127.0.0.1', sshd.port, (error) => resolve(error ? `refused: ${error.message}` : 'opened')),
      );
    }
    async function triggerOnce(config: MeshConfig): Promise<number | null | undefined> {
      const [target] = needsTrigger(config, 'alpha');
      const trigger = new RemoteTrigger({ target, logger: silentLogger(), intervalMs: 0 });
      trigger.poke();
      await trigger.whenIdle();
      await trigger.stop();
      return trigger.lastExit;
    }

    it('lets the key run the trigger’s pass and nothing else: no other command, no port forward (both work without the line)', async () => {
      const config = configOf(work, { ssh, gammaMesh: [fakeMesh] });
      // Without the restriction, this key may do anything: the checks below can fail.
      await writeFile(join(sshd.dir, 'authorized_keys'), plainLine);
      const open = await connectSsh(ssh);
      try {
        assert.match((await exec(open, ['id'])).output, /uid=/);
        assert.equal(await forward(open), 'opened');
      } finally {
        open.end();
      }

      const line = await install(config);
      assert.match(
        line,
        /^command="case \\"\$SSH_ORIGINAL_COMMAND\\" in .*",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc,restrict ssh-ed25519 /,
      );
      assert.equal(await triggerOnce(config), 0, 'the trigger’s pass ran and succeeded');
      assert.deepEqual(await runs(), [`pass agent --site gamma --once [${remoteCommandLine([fakeMesh, 'agent', '--site', 'gamma', '--once'])}]`]);

      const client = await connectSsh(ssh);
      try {
        const id = await exec(client, ['id']);
        assert.equal(id.code, 1);
        assert.match(id.output, /couchmesh: refused/);
        assert.doesNotMatch(id.output, /uid=/);
        const sneaky = await exec(client, [fakeMesh, 'agent', '--site', 'gamma', '--once', ';', 'id']);
        assert.equal(sneaky.code, 1, 'the pass with anything added is refused');
        assert.match(await forward(client), /^refused/);
        await assert.rejects(
          new Promise((resolve, reject) => client.sftp((error, sftp) => (error ? reject(error) : resolve(sftp)))),
          'no SFTP: no transfer lands on gamma',
        );
      } finally {
        client.end();
      }
      assert.equal((await runs()).length, 1, 'nothing refused started a pass');
    });

    it('with a transfer landing on the site: SFTP and its sha256sum check too, still nothing else', async () => {
      const config = configOf(work, { ssh, gammaMesh: [fakeMesh], sftp: true });
      await install(config);
      const source = join(work, 'file_1');
      await writeFile(source, 'x'.repeat(100_000));
      const target = join(work, 'gamma', 'raw', "it's_1");
      const sent = await transfer({ source, target, ssh });
      assert.equal(sent.verified_by, 'read-back', 'a path holding a quote is refused to sha256sum: read back instead');
      const plain = await transfer({ source, target: join(work, 'gamma', 'raw', 'plain_1'), ssh });
      assert.equal(plain.verified_by, 'sha256sum');
      assert.equal(plain.sha256, await sha256File(source));
      const before = (await runs()).length;
      assert.equal(await triggerOnce(config), 0);
      assert.equal((await runs()).length, before + 1);
      const client = await connectSsh(ssh);
      try {
        assert.equal((await exec(client, ['id'])).code, 1);
        assert.equal((await exec(client, ['sha256sum', '--', '/etc/hostname', '/etc/passwd'])).code, 1, 'one path only');
        assert.match(await forward(client), /^refused/);
      } finally {
        client.end();
      }
    });
  });
});
