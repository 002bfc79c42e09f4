/**
 * Bench section "sftp": the SFTP transfer executor (proc0) against the OpenSSH clients sending
 * the same file to the same private sshd, interleaved repetitions, medians.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { transfer } from '../agents/executors/sftp-transfer.js';
import type { SshTarget } from '../config/types.js';
import { type TestSshd, startSshd } from '../cli/local/sshd.js';
import { type BenchSection, median, progress, ratio } from './report.js';
import { Interrupted } from './wait.js';

const run = promisify(execFile);

export interface SftpOptions {
  quick: boolean;
  signal?: AbortSignal;
}

/** Seconds taken by `fn`. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The OpenSSH client options that match the executor's: key only, host key pinned, no config file. */
function opensshOptions(sshd: TestSshd): string[] {
  return [
    '-F',
    '/dev/null',
    '-i',
    sshd.identityFile,
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${sshd.knownHostsFile}`,
    '-o',
    'StrictHostKeyChecking=yes',
  ];
}

async function arrivedWhole(path: string, bytes: number): Promise<void> {
  const size = (await stat(path)).size;
  if (size !== bytes) throw new Error(`${path} arrived with ${size} bytes, ${bytes} were sent`);
}

export async function runSftp(options: SftpOptions): Promise<BenchSection> {
  const mib = options.quick ? 4 : 64;
  const repetitions = options.quick ? 1 : 5;
  const bytes = mib * 1024 * 1024;
  const sshd = await startSshd();
  const dir = await mkdtemp(join(tmpdir(), 'mesh-bench-sftp-'));
  const ssh: SshTarget = { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 };
  const destination = `${sshd.user}@127.0.0.1`;
  const seconds = {
    executor: [] as number[],
    streaming: [] as number[],
    sftp: [] as number[],
    scp: [] as number[],
    scpLegacy: [] as number[],
    sha256sum: [] as number[],
  };
  try {
    const source = join(dir, 'source.bin');
    await writeFile(source, randomBytes(bytes));
    const batchFile = join(dir, 'put.batch');
    for (let rep = 1; rep <= repetitions; rep++) {
      if (options.signal?.aborted) throw new Interrupted('the sftp repetitions');
      progress('sftp', `repetition ${rep}/${repetitions}: ${mib} MiB by transfer(), sftp, scp, scp -O`);
      // Interleaved, so that a burst of load from elsewhere hits every method alike.
      const target = join(dir, 'remote', `executor-${rep}`);
      let streaming = 0;
      seconds.executor.push(await timed(async () => (streaming = (await transfer({ source, target, ssh })).seconds)));
      seconds.streaming.push(streaming);
      await arrivedWhole(target, bytes);

      const sftpTarget = join(dir, `sftp-${rep}`);
      await writeFile(batchFile, `put ${source} ${sftpTarget}\n`);
      seconds.sftp.push(await timed(() => run('sftp', ['-q', ...opensshOptions(sshd), '-P', String(sshd.port), '-b', batchFile, destination])));
      await arrivedWhole(sftpTarget, bytes);

      const scpTarget = join(dir, `scp-${rep}`);
      seconds.scp.push(await timed(() => run('scp', ['-q', ...opensshOptions(sshd), '-P', String(sshd.port), source, `${destination}:${scpTarget}`])));
      await arrivedWhole(scpTarget, bytes);

      const legacyTarget = join(dir, `scp-legacy-${rep}`);
      seconds.scpLegacy.push(
        await timed(() => run('scp', ['-O', '-q', ...opensshOptions(sshd), '-P', String(sshd.port), source, `${destination}:${legacyTarget}`])),
      );
      await arrivedWhole(legacyTarget, bytes);

      seconds.sha256sum.push(await timed(() => run('sha256sum', [source])));
      await Promise.all([target, sftpTarget, scpTarget, legacyTarget].map((f) => rm(f, { force: true })));
    }
  } finally {
    await sshd.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const mbps = (s: number[]) => bytes / median(s) / 1e6;
  const show = (s: number[]) => `${mbps(s).toFixed(0)} MB/s`;
  const executor = mbps(seconds.executor);
  return {
    title: `sftp: the SFTP transfer executor vs the OpenSSH clients, ${mib} MiB to the same private sshd on loopback`,
    command: `node dist/bench/main.js --only sftp${options.quick ? ' --quick' : ''}`,
    rows: [
      {
        measure: 'executor transfer(), whole call vs `sftp -b` put',
        value: show(seconds.executor),
        baseline: `${show(seconds.sftp)} sftp`,
        ratio: ratio(executor, mbps(seconds.sftp)),
      },
      {
        measure: 'executor transfer(), whole call vs `scp` (SFTP protocol)',
        value: show(seconds.executor),
        baseline: `${show(seconds.scp)} scp`,
        ratio: ratio(executor, mbps(seconds.scp)),
      },
      {
        measure: 'executor transfer(), whole call vs `scp -O` (legacy protocol)',
        value: show(seconds.executor),
        baseline: `${show(seconds.scpLegacy)} scp -O`,
        ratio: ratio(executor, mbps(seconds.scpLegacy)),
      },
      {
        measure: 'executor streaming phase only vs `sftp -b` put',
        value: show(seconds.streaming),
        baseline: `${show(seconds.sftp)} sftp`,
        ratio: ratio(mbps(seconds.streaming), mbps(seconds.sftp)),
      },
      { measure: 'local sha256sum of the file (one read)', value: show(seconds.sha256sum) },
    ],
    notes: [
      `median of ${repetitions} interleaved repetition(s); MB = 10^6 bytes; ratio > 1× means the executor is faster than the reference`,
      'every figure includes its own connection set-up and key exchange; the OpenSSH clients only send, the executor also hashes what it sends, has the remote side run sha256sum on the arrival and renames it',
      `executor whole call ≈ ${median(seconds.executor).toFixed(2)} s = streaming ${median(seconds.streaming).toFixed(2)} s + set-up, remote sha256sum (≈ ${median(seconds.sha256sum).toFixed(2)} s for this file) and rename`,
    ],
  };
}
