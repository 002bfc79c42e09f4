/**
 * The built-in transfer executor: one file to another site over SFTP, written under
 * `target.part`, verified on arrival (size, then sha256 computed on the remote side),
 * then renamed to `target`. A failed, aborted or partial transfer removes the `.part` and
 * never leaves anything under the final name.
 *
 * The remote sha256 comes from `sha256sum` run over the same SSH session, its path one
 * strictly single-quoted word (see remote-exec.ts; paths come from the config template and
 * were checked by templateVars). That reads the file once on the remote side instead of
 * sending it back over the WAN. Accounts that allow SFTP only (no shell, or no sha256sum)
 * fall back to reading the file back over SFTP: slower, just as exact.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Client, SFTPWrapper, Stats } from 'ssh2';
import type { SshTarget } from '../../config/types.js';
import { MeshError, errorMessage, isMeshError } from '../../core/errors.js';
import { unsafePath } from '../command.js';
import { execRemote } from './remote-exec.js';
import { connectSsh } from './ssh-connect.js';

export interface TransferOptions {
  /** Local file to send. */
  source: string;
  /** Absolute path of the file on the destination. */
  target: string;
  ssh: SshTarget;
  signal?: AbortSignal;
  /** The sha256 the source must have (the document's checksum), when known. */
  expectedSha256?: string;
  /** Destination site name, for messages. */
  site?: string;
  /** Called as data goes out (bytes sent so far). */
  onProgress?: (bytes: number) => void;
  connectTimeoutMs?: number;
}

export interface TransferResult {
  bytes: number;
  /** Time spent streaming the data (connection set-up and verification excluded). */
  seconds: number;
  /** Throughput in MB/s (10^6 bytes per second) over `seconds`. */
  mbps: number;
  /** The sha256 of the file as it arrived, equal to the source's. */
  sha256: string;
  /** How the remote sha256 was obtained. */
  verified_by: 'sha256sum' | 'read-back';
}

const SFTP_NO_SUCH_FILE = 2;
const CLEANUP_TIMEOUT_MS = 10_000;

function call<T>(what: string, fn: (cb: (error: Error | null | undefined, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    fn((error, value) => (error ? reject(Object.assign(error, { what })) : resolve(value)));
  });
}

function noSuchFile(error: unknown): boolean {
  return (error as { code?: unknown })?.code === SFTP_NO_SUCH_FILE;
}

function failed(message: string, cause?: unknown): MeshError {
  return new MeshError('TRANSFER_FAILED', message, cause === undefined ? {} : { cause });
}

function throwIfAborted(signal: AbortSignal | undefined, target: string): void {
  if (signal?.aborted) throw new MeshError('ABORTED', `transfer to ${target} aborted`);
}

/** `mkdir -p` over SFTP: every missing directory of `dir`, tolerating a concurrent creator. */
export async function sftpMkdirP(sftp: SFTPWrapper, dir: string): Promise<void> {
  const parts = dir.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const path = `/${parts.slice(0, i).join('/')}`;
    const stats = await call<Stats>('stat', (cb) => sftp.stat(path, cb)).catch((error) => (noSuchFile(error) ? undefined : Promise.reject(error)));
    if (stats?.isDirectory()) continue;
    if (stats) throw failed(`cannot create ${dir} on the destination: ${path} exists and is not a directory`);
    await call<void>('mkdir', (cb) => sftp.mkdir(path, cb)).catch(async (error) => {
      const again = await call<Stats>('stat', (cb) => sftp.stat(path, cb)).catch(() => undefined);
      if (!again?.isDirectory()) throw failed(`cannot create ${path} on the destination: ${errorMessage(error)}`, error);
    });
  }
}

async function removeIfPresent(sftp: SFTPWrapper, path: string): Promise<void> {
  await call<void>('unlink', (cb) => sftp.unlink(path, cb)).catch((error) => {
    if (!noSuchFile(error)) throw error;
  });
}

/** sha256 of a remote file: `sha256sum` on the remote side, else the file read back over SFTP. */
async function remoteSha256(
  client: Client,
  sftp: SFTPWrapper,
  path: string,
  signal?: AbortSignal,
): Promise<{ sha256: string; by: TransferResult['verified_by'] }> {
  const outcome = await execRemote(client, ['sha256sum', '--', path], { signal, captureStdout: 4096, timeoutMs: 30 * 60_000 }).catch(() => undefined);
  throwIfAborted(signal, path);
  // sha256sum prefixes the line with a backslash when the name needed escaping.
  const match = outcome?.exit_code === 0 ? /^\\?([0-9a-f]{64}) /.exec(outcome.stdout) : null;
  if (match) return { sha256: match[1], by: 'sha256sum' };
  const hash = createHash('sha256');
  await pipeline(
    sftp.createReadStream(path, { highWaterMark: 1 << 18 }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) hash.update(chunk);
    },
    { signal },
  );
  return { sha256: hash.digest('hex'), by: 'read-back' };
}

async function renameOver(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  try {
    // posix-rename@openssh.com replaces an existing target atomically.
    return await call<void>('rename', (cb) => sftp.ext_openssh_rename(from, to, cb));
  } catch (error) {
    if (!/does not support/.test(errorMessage(error))) throw error;
  }
  // Plain SFTP rename refuses an existing target: a previous attempt's verified copy goes first.
  await removeIfPresent(sftp, to);
  await call<void>('rename', (cb) => sftp.rename(from, to, cb));
}

/**
 * Sends `source` to `target` on the site reached through `ssh`. Rejects with
 * TRANSFER_FAILED (with the reason), ABORTED, SSH_HOST_KEY_MISMATCH or SSH_FAILED; in
 * every rejection nothing new exists under `target` and the `.part` has been removed
 * (unless the connection itself died, in which case the next attempt removes it first).
 */
export async function transfer(options: TransferOptions): Promise<TransferResult> {
  const { source, target, signal } = options;
  const problem = unsafePath(target);
  if (problem) throw new MeshError('BAD_INPUT', `transfer target ${JSON.stringify(target).slice(0, 200)} ${problem}`);
  const part = `${target}.part`;
  const handle = await open(source, 'r').catch((cause) => Promise.reject(failed(`cannot read ${source}: ${errorMessage(cause)}`, cause)));
  let client: Client | undefined;
  let sftp: SFTPWrapper | undefined;
  let partWritten = false;
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw failed(`${source} is not a regular file`);
    client = await connectSsh(options.ssh, { signal, site: options.site, timeoutMs: options.connectTimeoutMs });
    const session = client;
    const remote: SFTPWrapper = await call<SFTPWrapper>('sftp', (cb) => session.sftp(cb)).catch((cause) =>
      Promise.reject(new MeshError('SSH_FAILED', `no SFTP subsystem on ${options.ssh.host}:${options.ssh.port}: ${errorMessage(cause)}`, { cause })),
    );
    sftp = remote;
    throwIfAborted(signal, target);
    await sftpMkdirP(remote, posix.dirname(target));
    await removeIfPresent(remote, part);

    const hash = createHash('sha256');
    let bytes = 0;
    partWritten = true;
    const started = process.hrtime.bigint();
    await pipeline(
      handle.createReadStream({ highWaterMark: 1 << 18, autoClose: false, start: 0 }),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytes += chunk.length;
          options.onProgress?.(bytes);
          yield chunk;
        }
      },
      remote.createWriteStream(part, { flags: 'w', mode: 0o644 }),
      { signal },
    ).catch((cause) =>
      Promise.reject(
        signal?.aborted
          ? new MeshError('ABORTED', `transfer to ${target} aborted after ${bytes} bytes`, { cause })
          : failed(`writing ${part} failed after ${bytes} bytes: ${errorMessage(cause)}`, cause),
      ),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const sha256 = hash.digest('hex');

    const now = await handle.stat();
    if (bytes !== info.size || now.size !== info.size)
      throw failed(`${source} changed while it was sent (${info.size} bytes at the start, ${now.size} now, ${bytes} read); it may still be written to`);
    if (options.expectedSha256 && options.expectedSha256 !== sha256)
      throw failed(`${source} has sha256 ${sha256}, but the document records ${options.expectedSha256}: the file changed since it was catalogued`);
    const arrived = await call<Stats>('stat', (cb) => remote.stat(part, cb));
    if (arrived.size !== bytes) throw failed(`${part} has ${arrived.size} bytes on the destination, ${bytes} were sent`);
    const check = await remoteSha256(session, remote, part, signal);
    if (check.sha256 !== sha256) throw failed(`${part} arrived with sha256 ${check.sha256} (by ${check.by}), ${sha256} was sent`);
    throwIfAborted(signal, target);
    await renameOver(remote, part, target);
    partWritten = false;
    return { bytes, seconds, mbps: seconds > 0 ? bytes / seconds / 1e6 : 0, sha256, verified_by: check.by };
  } catch (error) {
    if (isMeshError(error)) throw error;
    throw failed(`transfer of ${source} to ${target} failed: ${errorMessage(error)}`, error);
  } finally {
    await handle.close().catch(() => undefined);
    if (partWritten && sftp) await cleanUp(sftp, part);
    client?.end();
  }
}

/** Best effort: the connection may be the thing that failed. */
async function cleanUp(sftp: SFTPWrapper, part: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([removeIfPresent(sftp, part).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, CLEANUP_TIMEOUT_MS)))]);
  clearTimeout(timer);
}
