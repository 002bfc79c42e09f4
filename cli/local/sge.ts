/**
 * A private one-host Grid Engine cluster for the tests (Son of Grid Engine 8.1.9, Debian's
 * gridengine-master, -exec and -client packages): a cell built by hand under one temporary
 * folder (`SGE_ROOT`), sge_qmaster and sge_execd started in the foreground as root with free
 * ports, and the four variables every client command needs. Fails loudly when not root or a
 * binary is missing. See FINDINGS (Grid Engine) for why each setting is there.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

const BIN = '/usr/lib/gridengine';
const SHARE = '/usr/share/gridengine';
const BINARIES = [
  'sge_qmaster',
  'sge_execd',
  'sge_shepherd',
  'spoolinit',
  'spooldefaults.bin',
  'qconf',
  'qsub',
  'qstat',
  'qdel',
  'qacct',
  'qrls',
  'qalter',
].map((b) => join(BIN, b));
/** The client wrappers the adapter runs from PATH (they honour SGE_ROOT and SGE_CELL). */
const WRAPPERS = ['/usr/bin/qsub', '/usr/bin/qstat', '/usr/bin/qdel', '/usr/bin/qacct'];
const PACKAGES = 'gridengine-master gridengine-exec gridengine-client gridengine-common';

export interface SgeResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface SgeCluster {
  dir: string;
  /** The one host: execution, submit and admin host, `<host>` in `all.q@<host>`. */
  host: string;
  /** Environment for Grid Engine's client commands: SGE_ROOT, SGE_CELL, SGE_QMASTER_PORT, SGE_EXECD_PORT. */
  env: Record<string, string>;
  /** Runs one client command of /usr/lib/gridengine with the cluster's environment; never throws on a non-zero exit. */
  run(command: 'qstat' | 'qacct' | 'qdel' | 'qsub' | 'qconf' | 'qmod' | 'qrls' | 'qalter', args: readonly string[]): Promise<SgeResult>;
  /** `qstat ARGS`: stdout, throws on a non-zero exit. */
  qstat(args: readonly string[]): Promise<string>;
  /** `qacct -j ID`: the accounting record, or undefined while there is none. */
  qacct(id: string): Promise<string | undefined>;
  /** Ends every job and daemon of the cluster (bounded waits, then SIGKILL) and removes the folder. Idempotent. */
  stop(): Promise<void>;
}

function run(file: string, args: readonly string[], env: Record<string, string>, timeoutMs = 30_000): Promise<SgeResult> {
  return new Promise((resolve) => {
    execFile(file, [...args], { env, timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr: stderr || (error && code === null ? error.message : '') });
    });
  });
}

function idOf(name: string): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }));
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  } catch {
    // reported below
  }
  throw new Error(`user ${name} does not exist (is gridengine-common installed?)`);
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (entry.isDirectory()) await chownTree(join(path, entry.name), uid, gid);
    else await chown(join(path, entry.name), uid, gid);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The processes of this cluster still alive: every process whose environment names this
 * SGE_ROOT (the daemons, their shepherds and the jobs, which inherit execd's environment).
 * The folder is a fresh mkdtemp, so nothing else on the machine matches.
 */
async function processesOf(root: string): Promise<number[]> {
  const needle = `SGE_ROOT=${root}\0`;
  const pids: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const environ = await readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => '');
    if (`${environ}\0`.includes(needle) || cwd === root || cwd.startsWith(`${root}/`)) pids.push(Number(name));
  }
  return pids;
}

async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs: number, log: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Grid Engine test cluster: timed out after ${timeoutMs} ms waiting for ${what}\n${await log()}`);
}

export async function startSge(): Promise<SgeCluster> {
  if (process.getuid?.() !== 0) throw new Error('the Grid Engine tests start sge_qmaster and sge_execd and must run as root');
  const missing = [...BINARIES, ...WRAPPERS].filter((b) => !existsSync(b));
  if (missing.length > 0) throw new Error(`the Grid Engine tests need ${missing.join(', ')} (Debian packages ${PACKAGES}; see scripts/setup.mjs --system)`);
  const admin = idOf('sgeadmin');
  const host = hostname();
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sge-'));
  await chmod(dir, 0o755);
  const common = join(dir, 'default', 'common');
  const qmasterSpool = join(dir, 'spool', 'qmaster');
  const execdSpool = join(dir, 'spool', 'execd');
  for (const d of [common, qmasterSpool, execdSpool]) await mkdir(d, { recursive: true, mode: 0o755 });
  const [qmasterPort, execdPort] = [await freePort(), await freePort()];
  const env = { SGE_ROOT: dir, SGE_CELL: 'default', SGE_QMASTER_PORT: String(qmasterPort), SGE_EXECD_PORT: String(execdPort) };
  // What the daemons (and so the jobs, which inherit execd's environment) get: nothing of ours.
  const daemonEnv = { ...env, PATH: '/usr/bin:/bin', SGE_ND: '1' };
  const clientEnv = { ...env, PATH: process.env.PATH ?? '/usr/bin:/bin' };

  // A client calls itself by the host name, a loopback connection resolves to localhost.
  await writeFile(join(common, 'host_aliases'), `${host} localhost\n`);
  await writeFile(join(common, 'act_qmaster'), `${host}\n`);
  await writeFile(
    join(common, 'bootstrap'),
    [
      `admin_user              sgeadmin`,
      `default_domain          none`,
      `ignore_fqdn             true`,
      `spooling_method         classic`,
      `spooling_lib            libspoolc`,
      `spooling_params         ${common};${qmasterSpool}`,
      `binary_path             ${BIN}`,
      `qmaster_spool_dir       ${qmasterSpool}`,
      `security_mode           none`,
      `listener_threads        2`,
      `worker_threads          2`,
      `scheduler_threads       1`,
      '',
    ].join('\n'),
  );
  const defaults = await readFile(join(SHARE, 'default-configuration'), 'utf8');
  const settings: Record<string, string> = {
    execd_spool_dir: execdSpool,
    // root submits the test jobs (the default, 1000, refuses uid 0).
    min_uid: '0',
    min_gid: '0',
    mailer: '/bin/true',
    // Accounting written as each job ends, so `qacct -j` tells a finished job at once.
    reporting_params: 'accounting=true reporting=false flush_time=00:00:15 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00',
  };
  const configuration = defaults
    .split('\n')
    .map((line) => {
      const key = /^(\w+)\s/.exec(line)?.[1];
      return key && key in settings ? `${key.padEnd(22)} ${settings[key]}` : line;
    })
    .join('\n');
  await writeFile(join(dir, 'configuration'), configuration);
  await chownTree(dir, admin.uid, admin.gid);

  const log = async () => {
    const parts = await Promise.all(
      [join(qmasterSpool, 'messages'), join(execdSpool, host, 'messages'), join(dir, 'qmaster.log'), join(dir, 'execd.log')].map(
        async (f) => `--- ${f.slice(dir.length + 1)}\n${(await readFile(f, 'utf8').catch(() => '(none)')).split('\n').slice(-15).join('\n')}`,
      ),
    );
    return parts.join('\n');
  };
  const must = async (file: string, args: readonly string[], options: { env?: Record<string, string> } = {}): Promise<string> => {
    const result = await run(file, args, options.env ?? clientEnv);
    if (result.code !== 0) throw new Error(`${file} ${args.join(' ')} exited with ${result.code}: ${result.stderr || result.stdout}`);
    return result.stdout;
  };
  const qconf = (args: readonly string[]) => must(join(BIN, 'qconf'), args);

  let qmaster: ChildProcess | undefined;
  let execd: ChildProcess | undefined;
  const daemon = (name: 'sge_qmaster' | 'sge_execd'): ChildProcess => {
    const out = openSync(join(dir, `${name.slice(4)}.log`), 'a');
    try {
      return spawn(join(BIN, name), [], { env: daemonEnv, cwd: dir, stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // `qconf -kej` kills the running jobs and then execd (SIGTERM of execd leaves orphaned shepherds).
      if (execd && execd.exitCode === null && execd.signalCode === null && qmaster && qmaster.exitCode === null) {
        await run(join(BIN, 'qconf'), ['-kej', host], clientEnv, 10_000);
        if (!(await within(exited(execd), 10_000))) execd.kill('SIGKILL');
      }
      // A controlled qmaster stop takes 7–9 s; its state is thrown away with the folder.
      qmaster?.kill('SIGKILL');
      execd?.kill('SIGKILL');
      await Promise.all([qmaster, execd].map((c) => (c ? within(exited(c), 10_000) : undefined)));
      // Whatever is left of the cluster: orphaned shepherds, jobs.
      for (let round = 0; round < 20; round++) {
        const left = await processesOf(dir);
        if (left.length === 0) break;
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    const spoolEnv = { ...env, PATH: '/usr/bin:/bin', LD_LIBRARY_PATH: BIN };
    await must(join(BIN, 'spoolinit'), ['classic', 'libspoolc', `${common};${qmasterSpool}`, 'init'], { env: spoolEnv });
    for (const args of [
      ['configuration', join(dir, 'configuration')],
      ['complexes', join(SHARE, 'util', 'resources', 'centry')],
      ['usersets', join(SHARE, 'util', 'resources', 'usersets')],
      // sgeadmin too: the qmaster's own threads act as the admin user.
      ['managers', 'root', 'sgeadmin'],
    ])
      await must(join(BIN, 'spooldefaults.bin'), args, { env: spoolEnv });
    await chownTree(dir, admin.uid, admin.gid);

    qmaster = daemon('sge_qmaster');
    await waitUntil(
      'sge_qmaster to answer',
      async () => {
        if (qmaster?.exitCode !== null) throw new Error(`sge_qmaster exited with ${qmaster?.exitCode}\n${await log()}`);
        return (await run(join(BIN, 'qconf'), ['-sh'], clientEnv, 5_000)).code === 0;
      },
      30_000,
      log,
    );
    await qconf(['-as', host]);
    const files = join(dir, 'setup');
    await mkdir(files);
    const exechost = join(files, 'exechost');
    await writeFile(
      exechost,
      [
        `hostname ${host}`,
        'load_scaling NONE',
        'complex_values NONE',
        'user_lists NONE',
        'xuser_lists NONE',
        'projects NONE',
        'xprojects NONE',
        'usage_scaling NONE',
        'report_variables NONE',
        '',
      ].join('\n'),
    );
    await qconf(['-Ae', exechost]);
    // `qconf -sq` without a name prints the template queue.
    const queueSettings: Record<string, string> = { qname: 'all.q', hostlist: host, slots: '2', pe_list: 'NONE', load_thresholds: 'NONE' };
    const queue = join(files, 'all.q');
    await writeFile(queue, setAll(await qconf(['-sq']), queueSettings));
    await qconf(['-Aq', queue]);
    const scheduler = join(files, 'scheduler');
    await writeFile(scheduler, setAll(await qconf(['-ssconf']), { schedule_interval: '0:0:1', flush_submit_sec: '1', flush_finish_sec: '1' }));
    await qconf(['-Msconf', scheduler]);

    execd = daemon('sge_execd');
    await waitUntil(
      `the queue all.q@${host} to be available`,
      async () => {
        if (execd?.exitCode !== null) throw new Error(`sge_execd exited with ${execd?.exitCode}\n${await log()}`);
        const result = await run(join(BIN, 'qstat'), ['-f', '-q', 'all.q'], clientEnv, 5_000);
        // `queuename qtype resv/used/tot. load_avg arch states`: no state letters (au, E, d) once execd reported.
        const line = result.stdout.split('\n').find((l) => l.startsWith(`all.q@${host} `));
        return result.code === 0 && line !== undefined && line.trim().split(/\s+/).length === 5;
      },
      30_000,
      log,
    );
  } catch (error) {
    const detail = await log();
    await stop();
    throw new Error(`cannot start the Grid Engine test cluster: ${(error as Error).message}\n${detail}`);
  }

  return {
    dir,
    host,
    env,
    run: (command, args) => run(join(BIN, command), args, clientEnv),
    qstat: (args) => must(join(BIN, 'qstat'), args),
    qacct: async (id) => {
      const result = await run(join(BIN, 'qacct'), ['-j', id], clientEnv);
      return result.code === 0 ? result.stdout : undefined;
    },
    stop,
  };
}

/** A `qconf -s…` listing (`name   value` lines) with some values replaced. */
function setAll(listing: string, values: Record<string, string>): string {
  return listing
    .split('\n')
    .map((line) => {
      const key = /^(\w+)\s/.exec(line)?.[1];
      return key && key in values ? `${key} ${values[key]}` : line;
    })
    .join('\n');
}
