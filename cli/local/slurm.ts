/**
 * A private one-node Slurm cluster for the tests: munged, slurmctld and slurmd started by hand
 * as root (no systemd), every file under one temporary folder, free loopback ports, and
 * `SLURM_CONF` for the client commands. Fails loudly when not root or a binary is missing.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
const BINARIES = [
  '/usr/sbin/munged',
  '/usr/sbin/slurmctld',
  '/usr/sbin/slurmd',
  '/usr/bin/sbatch',
  '/usr/bin/scontrol',
  '/usr/bin/scancel',
  '/usr/bin/sinfo',
  '/usr/bin/squeue',
];

export interface SlurmCluster {
  dir: string;
  /** Environment for Slurm's client commands (SLURM_CONF). */
  env: Record<string, string>;
  scontrol(args: string[]): Promise<string>;
  /** `squeue -h`: the jobs still pending or running, one per line. */
  squeue(): Promise<string>;
  stop(): Promise<void>;
}

function idOf(name: string): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }));
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  } catch {
    // reported below
  }
  throw new Error(`user ${name} does not exist (is the munge package installed?)`);
}

async function pidFrom(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, condition: () => Promise<boolean> | boolean, timeoutMs: number, log?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Slurm test cluster: timed out after ${timeoutMs} ms waiting for ${what}${log ? `\n${await log()}` : ''}`);
}

export async function startSlurm(): Promise<SlurmCluster> {
  if (process.getuid?.() !== 0) throw new Error('the Slurm tests start munged, slurmctld and slurmd and must run as root');
  const missing = BINARIES.filter((b) => !existsSync(b));
  if (missing.length > 0) throw new Error(`the Slurm tests need ${missing.join(', ')} (Debian packages slurm-wlm and munge)`);
  const munge = idOf('munge');
  const dir = await mkdtemp(join(tmpdir(), 'mesh-slurm-'));
  await chmod(dir, 0o755);
  const mungeDir = join(dir, 'munge');
  await mkdir(mungeDir, { mode: 0o755 });
  await chmod(mungeDir, 0o755); // munged requires its socket folder to be searchable by all
  await copyFile('/etc/munge/munge.key', join(mungeDir, 'munge.key'));
  await chmod(join(mungeDir, 'munge.key'), 0o600);
  await chown(mungeDir, munge.uid, munge.gid);
  await chown(join(mungeDir, 'munge.key'), munge.uid, munge.gid);
  for (const sub of ['state', 'spool', 'log']) await mkdir(join(dir, sub), { mode: 0o755 });
  const socket = join(mungeDir, 'munge.socket');
  const pids = { munged: join(mungeDir, 'munged.pid'), slurmctld: join(dir, 'slurmctld.pid'), slurmd: join(dir, 'slurmd.pid') };
  const node = hostname();
  const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'slurm.conf');
  await writeFile(
    conf,
    [
      `ClusterName=meshtest${process.pid}`,
      `SlurmctldHost=${node}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${pids.slurmctld}`,
      `SlurmdPidFile=${pids.slurmd}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'log', 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'AccountingStorageType=accounting_storage/none',
      'JobAcctGatherType=jobacct_gather/none',
      'SelectType=select/cons_tres',
      'DefMemPerCPU=500',
      'MinJobAge=300',
      // A job past its walltime gets SIGTERM, then SIGKILL 2 s later (default 30 s).
      'KillWait=2',
      'OverTimeLimit=0',
      'SchedulerParameters=sched_min_interval=0,batch_sched_delay=0',
      'ReturnToService=2',
      `NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus().length} RealMemory=4000 State=UNKNOWN`,
      `PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { SLURM_CONF: conf };
  const logs = async () => {
    const parts = await Promise.all(
      ['log/slurmctld.log', 'log/slurmd.log', 'munge/munged.log'].map(
        async (f) => `--- ${f}\n${(await readFile(join(dir, f), 'utf8').catch(() => '(none)')).split('\n').slice(-15).join('\n')}`,
      ),
    );
    return parts.join('\n');
  };

  const stop = async (): Promise<void> => {
    for (const name of ['slurmd', 'slurmctld', 'munged'] as const) {
      const pid = await pidFrom(pids[name]);
      if (pid === undefined || !alive(pid)) continue;
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + 10_000;
      while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const mungedArgs = [
      `--socket=${socket}`,
      `--key-file=${join(mungeDir, 'munge.key')}`,
      `--log-file=${join(mungeDir, 'munged.log')}`,
      `--pid-file=${pids.munged}`,
      `--seed-file=${join(mungeDir, 'munged.seed')}`,
    ];
    // munged refuses to run as root; it forks into the background once its socket is ready.
    await run('/usr/sbin/munged', mungedArgs, { uid: munge.uid, gid: munge.gid });
    await run('/usr/sbin/slurmctld', ['-f', conf], { env: { ...process.env, ...env } });
    await run('/usr/sbin/slurmd', ['-f', conf], { env: { ...process.env, ...env } });
    await waitUntil(
      `node ${node} to be idle`,
      async () => {
        const out = await run('/usr/bin/sinfo', ['-h', '-n', node, '-o', '%t'], { env: { ...process.env, ...env } }).then(
          (r) => r.stdout,
          () => '',
        );
        return out.trim() === 'idle';
      },
      30_000,
      logs,
    );
  } catch (error) {
    const detail = await logs();
    await stop();
    throw new Error(`cannot start the Slurm test cluster: ${(error as Error).message}\n${detail}`);
  }
  return {
    dir,
    env,
    scontrol: async (args) => (await run('/usr/bin/scontrol', args, { env: { ...process.env, ...env } })).stdout,
    squeue: async () => (await run('/usr/bin/squeue', ['-h'], { env: { ...process.env, ...env } })).stdout,
    stop,
  };
}
