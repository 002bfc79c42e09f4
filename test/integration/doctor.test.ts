/**
 * `mesh doctor` against the simulated topology built from its own parts (cli/simulation-config.ts,
 * cli/simulation-accounts.ts): modane's and kit's embedded servers in this process, with admins and
 * one account per process, the design documents and `_security` pushed as the coordinator would;
 * a real sshd for lyon, a real Slurm cluster for its batch jobs, a real nats-server. Every site
 * passes; then each failure is made for real and shows as its one FAIL line: a wrong password, a
 * stale couchapp, an unknown host key, a missing folder, no sbatch on PATH, an invalid config.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkLine, type Check } from '../../cli/doctor/check.js';
import { type DoctorOptions, runDoctor } from '../../cli/doctor/doctor.js';
import { clockCheck } from '../../cli/doctor/servers.js';
import { MESH_MAIN } from '../../cli/processes.js';
import { type SimulationAccounts, createSimulationAccounts, withAccount } from '../../cli/simulation-accounts.js';
import { simulationConfig } from '../../cli/simulation-config.js';
import { upsertAccount } from '../../cli/accounts.js';
import { credentialPrefix } from '../../config/credentials.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import { silentLogger } from '../../core/log.js';
import { agentRole } from '../../core/roles.js';
import { type EmbeddedServer, startEmbeddedServer } from '../../server/embedded.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import { pushSecurity } from '../../store/security.js';
import { testFolder } from '../support/folders.js';
import { runMesh } from '../support/mesh.js';
import { type NatsServer, startNatsServer } from '../support/nats.js';
import { type SlurmCluster, startSlurm } from '../support/slurm.js';
import { type TestSshd, fingerprint, makeKey, startSshd, stopAllSshd } from '../support/sshd.js';

const failed = (checks: Check[]) => checks.filter((c) => !c.ok);

describe('mesh doctor against the simulated topology', function () {
  this.timeout(120_000);
  let work: string;
  let servers: Record<'modane' | 'kit', EmbeddedServer>;
  let sshd: TestSshd;
  let slurm: SlurmCluster;
  let nats: NatsServer;
  let raw: ReturnType<typeof simulationConfig>;
  let configFile: string;
  let config: MeshConfig;
  let accounts: SimulationAccounts;
  /** The server admins, as MESH_<SITE>_USER / _PASSWORD_FILE. */
  let adminEnv: Record<string, string>;
  let base: NodeJS.ProcessEnv;

  /** Writes a variant of the config next to the healthy one. */
  async function variant(name: string, change: (r: typeof raw) => void): Promise<string> {
    const copy = structuredClone(raw);
    change(copy);
    const file = join(work, `${name}.json`);
    await writeFile(file, JSON.stringify(copy, null, 2));
    return file;
  }
  const doctor = (site: string, env: NodeJS.ProcessEnv, options: Partial<DoctorOptions> = {}) =>
    runDoctor({ configFile, site, env, timeoutMs: 10_000, ...options });
  const lyonEnv = () => ({ ...withAccount(base, accounts.env('lyon-agent')), ...slurm.env });
  const admin = (site: 'modane' | 'kit', database: string) =>
    new Database({
      url: servers[site].url,
      database,
      credentials: { user: 'admin', password: readFileSync(adminEnv[`${credentialPrefix(site)}_PASSWORD_FILE`], 'utf8').trim() },
    });

  before(async () => {
    work = testFolder('mesh-doctor-');
    const secrets = join(work, 'secrets');
    await mkdir(secrets, { mode: 0o700 });
    adminEnv = {};
    servers = {} as typeof servers;
    for (const site of ['modane', 'kit'] as const) {
      const admin = { user: 'admin', password: randomBytes(18).toString('base64url') };
      const file = join(secrets, `${site}-admin.password`);
      await writeFile(file, `${admin.password}\n`, { mode: 0o600 });
      adminEnv[`${credentialPrefix(site)}_USER`] = admin.user;
      adminEnv[`${credentialPrefix(site)}_PASSWORD_FILE`] = file;
      servers[site] = await startEmbeddedServer({ site, dataDir: join(work, site, 'couch'), admin, logger: silentLogger() });
    }
    [sshd, slurm, nats] = await Promise.all([startSshd(), startSlurm(), startNatsServer()]);
    const urls = { modane: servers.modane.url, kit: servers.kit.url };
    const services = {
      ssh: { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 },
      slurm: true,
      natsUrl: nats.url,
    };
    raw = simulationConfig(work, urls, services);
    configFile = join(work, 'mesh.json');
    raw.sites.lyon = { ...raw.sites.lyon, mesh: [process.execPath, MESH_MAIN, '--config', configFile] } as typeof raw.sites.lyon;
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    config = parseMeshConfig(raw, configFile);
    base = { PATH: process.env.PATH };
    const made = await createSimulationAccounts(urls, adminEnv, secrets);
    assert.ok(made, 'the servers have admins: one account per process');
    accounts = made;
    // What the coordinator does at its first round: the database, the design documents, _security.
    for (const site of ['modane', 'kit'] as const) {
      const db = admin(site, config.database);
      await db.ensure();
      await pushDesigns(db, config);
      await pushSecurity(db, Object.keys(config.sites));
    }
    for (const site of Object.values(config.sites)) await mkdir(site.log_dir, { recursive: true });
    for (const folder of [
      raw.sites.modane.storage,
      join(raw.sites.lyon.storage, 'raw'),
      join(raw.sites.lyon.storage, 'converted'),
      join(raw.sites.lyon.storage, 'analysis'),
    ])
      await mkdir(folder, { recursive: true });
  });
  after(async () => {
    await Promise.all(Object.values(servers ?? {}).map((s) => s.close()));
    await Promise.all([sshd?.stop(), slurm?.stop(), nats?.stop()]);
    assert.equal(await stopAllSshd(), 0, 'an sshd leaked');
  });

  it('passes every check of every site, each process with its own account', async () => {
    const runs: Array<[string, NodeJS.ProcessEnv, Partial<DoctorOptions>]> = [
      // The whole of modane, as its coordinator's environment: the admins, the replication account.
      ['modane', { ...base, ...adminEnv, ...accounts.replicationEnv() }, {}],
      ['modane', withAccount(base, accounts.env('modane-agent')), { unit: 'agent' }],
      ['lyon', lyonEnv(), {}],
      ['kit', { ...base, ...adminEnv }, {}],
    ];
    for (const [site, env, options] of runs) {
      const report = await doctor(site, env, options);
      assert.deepEqual(failed(report.checks).map(checkLine), [], `${site} ${options.unit ?? ''}:\n${report.checks.map(checkLine).join('\n')}`);
      assert.equal(report.status, 0);
      const what = report.checks.map((c) => c.what.split(' ')[0]);
      if (site === 'modane' && !options.unit) {
        for (const kind of ['config', 'password', 'server', 'database', 'couchapp', 'replication', 'clock', 'folder', 'ssh', 'nats'])
          assert.ok(what.includes(kind), kind);
        assert.match(report.checks.find((c) => c.what.startsWith('replication account on kit'))?.detail ?? '', /sim-coordinator \(roles mesh-coordinator\)/);
      }
      if (site === 'lyon') {
        assert.ok(what.includes('batch'), 'the batch system is checked');
        assert.match(report.checks.find((c) => c.what.startsWith('server kit'))?.detail ?? '', new RegExp(`sim-lyon-agent \\(roles ${agentRole('lyon')}\\)`));
      }
    }
  });

  it('a wrong password: FAIL on that server, with what to do; the account is refused once, not locked', async () => {
    const right = randomBytes(12).toString('hex');
    await upsertAccount(admin('kit', '_users'), 'doctor-wrong', right, [agentRole('lyon')]);
    const wrong = join(work, 'secrets', 'wrong.password');
    await writeFile(wrong, 'not-the-password\n', { mode: 0o600 });
    const report = await doctor('lyon', { ...lyonEnv(), MESH_KIT_USER: 'doctor-wrong', MESH_KIT_PASSWORD_FILE: wrong });
    assert.equal(report.status, 1);
    const [bad, ...others] = failed(report.checks);
    assert.equal(others.length, 0, report.checks.map(checkLine).join('\n'));
    assert.match(
      checkLine(bad),
      /^FAIL server kit http:\S+: doctor-wrong refused: Name or password is incorrect\. → check MESH_KIT_USER and the password in MESH_KIT_PASSWORD_FILE; 5 failed logins/,
    );
    // One refused login per run, far from the lockout's five: the right password still works.
    await writeFile(wrong, `${right}\n`);
    assert.equal((await doctor('lyon', { ...lyonEnv(), MESH_KIT_USER: 'doctor-wrong', MESH_KIT_PASSWORD_FILE: wrong })).status, 0);
    // An account of another site is authorised, but not for lyon's processes.
    const modaneAgent = await doctor('lyon', { ...withAccount(base, accounts.env('modane-agent')), ...slurm.env });
    assert.match(
      failed(modaneAgent.checks).map(checkLine).join('\n'),
      /logged in as sim-modane-agent \(roles mesh-agent:modane\); this site's processes need one of: mesh-agent:lyon → give the process an account with role mesh-agent:lyon/,
    );
  });

  it('a stale couchapp: FAIL until it is pushed again', async () => {
    const kit = admin('kit', config.database);
    const design = await kit.get<{ _id: string; _rev: string }>('_design/mesh');
    assert.ok(design);
    await kit.put({ ...design, mesh_version: 'an older one' });
    const stale = await doctor('lyon', lyonEnv());
    assert.deepEqual(failed(stale.checks).map(checkLine), [
      `FAIL couchapp on kit: _design/mesh differs from the generated one → mesh couchapp push --site kit (with the server admin), or let the coordinator's next round push it; every site must run the same config`,
    ]);
    await pushDesigns(kit, config);
    assert.equal((await doctor('lyon', lyonEnv())).status, 0, 'pushed again: all pass');
  });

  it('an unknown host key: FAIL on the SSH target, nothing sent', async () => {
    const impostor = await makeKey(testFolder('mesh-doctor-key-'), 'impostor');
    const pinned = await fingerprint(`${impostor}.pub`);
    const withPin = await variant('other-key', (r) => {
      (r.sites.lyon as { ssh: { host_key_sha256: string } }).ssh.host_key_sha256 = pinned;
    });
    const accepted = () => (sshd.output().match(/Accepted publickey/g) ?? []).length;
    const acceptedBefore = accepted();
    const report = await doctor('modane', withAccount(base, accounts.env('modane-agent')), { unit: 'agent', configFile: withPin });
    assert.equal(accepted(), acceptedBefore, 'refused before authenticating');
    const bad = failed(report.checks);
    assert.equal(bad.length, 1, report.checks.map(checkLine).join('\n'));
    assert.match(
      checkLine(bad[0]),
      new RegExp(
        `^FAIL ssh lyon ${sshd.user}@127\\.0\\.0\\.1:${sshd.port}: SSH host key mismatch .* → pin the new key in sites\\.lyon\\.ssh\\.host_key_sha256 only once lyon's administrator confirms it$`,
      ),
    );
  });

  it('a missing folder: FAIL naming it and how to make it', async () => {
    const missing = join(work, 'lyon', 'no-logs-here');
    const file = await variant('missing-folder', (r) => {
      r.sites.lyon.log_dir = missing;
    });
    const report = await doctor('lyon', lyonEnv(), { configFile: file });
    assert.deepEqual(failed(report.checks).map(checkLine), [
      `FAIL folder ${missing}: step and batch logs (log_dir): missing → mkdir -p ${missing}, writable by root`,
    ]);
  });

  it('no sbatch on PATH: FAIL saying what to install', async () => {
    const report = await doctor('lyon', { ...lyonEnv(), PATH: '/nonexistent' });
    assert.deepEqual(failed(report.checks).map(checkLine), ['FAIL batch system slurm: no sbatch on PATH (/nonexistent) → install slurm-client or fix PATH']);
  });

  it('an invalid config: FAIL config, status 2', async () => {
    const file = join(work, 'broken.json');
    await writeFile(file, JSON.stringify({ ...raw, steps: [] }));
    const report = await doctor('lyon', lyonEnv(), { configFile: file });
    assert.equal(report.status, 2);
    assert.equal(report.checks.length, 1);
    assert.match(checkLine(report.checks[0]), /^FAIL config .*broken\.json: invalid configuration .*steps is \[\], expected a non-empty list/s);
  });

  it('a clock off by more than the tolerance fails, one within passes (the Date header has whole seconds)', () => {
    const now = Date.now();
    const at = (offsetMs: number) => ({ date: new Date(Math.floor((now + offsetMs) / 1000) * 1000), sentAt: now - 5, receivedAt: now + 5, welcome: {} });
    assert.equal(clockCheck('clock', at(0), 10).ok, true);
    assert.equal(clockCheck('clock', at(9_000), 10).ok, true);
    assert.equal(clockCheck('clock', at(12_000), 10).ok, false);
    assert.equal(clockCheck('clock', at(-12_000), 10).ok, false);
    assert.equal(clockCheck('clock', { ...at(0), date: undefined }, 10).ok, false);
  });

  it('as a command: one line per check, exit 0 when all pass, 1 when one fails; --env-file gives the process its account', async () => {
    const envFile = join(work, 'lyon-agent.env');
    const lyon = accounts.env('lyon-agent');
    await writeFile(envFile, `# as mesh deploy writes it\nMESH_KIT_USER=${lyon.MESH_KIT_USER}\nMESH_KIT_PASSWORD_FILE=${lyon.MESH_KIT_PASSWORD_FILE}\n`, {
      mode: 0o600,
    });
    // The env file is all the account the command gets: the admin's variables here must not count.
    const clean = { ...adminEnv, ...slurm.env };
    const ok = await runMesh(['--config', configFile, 'doctor', '--site', 'lyon', '--unit', 'agent', '--env-file', envFile], clean, 60_000);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    const lines = ok.stdout.split('\n').filter(Boolean);
    assert.ok(lines.length >= 8 && lines.every((l) => l.startsWith('ok   ')), ok.stdout);
    const bad = await runMesh(['--config', configFile, 'doctor', '--site', 'lyon', '--env-file', envFile], { ...clean, PATH: '/nonexistent' }, 60_000);
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /^FAIL batch system slurm: no sbatch/m);
  });
});
