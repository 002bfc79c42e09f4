/**
 * One SSH connection to another site: a TCP socket opened here (Nagle off: SFTP write
 * streams are ~100× faster), key authentication only, and the server's host key checked
 * against the fingerprint pinned in the site profile before anything is sent.
 */
import { readFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { Client } from 'ssh2';
import type { SshTarget } from '../../config/types.js';
import { MeshError, errorMessage } from '../../core/errors.js';

export interface SshConnectOptions {
  /** Aborting before the session is ready closes the socket and rejects with ABORTED. */
  signal?: AbortSignal;
  /** TCP connect, handshake and authentication together (default 20 s). */
  timeoutMs?: number;
  /** Interval of SSH keepalives once connected, so a dead peer is noticed (default 15 s, 4 missed = dead). */
  keepaliveMs?: number;
  /** The site this target belongs to, for messages. */
  site?: string;
}

const DEFAULT_TIMEOUT_MS = 20_000;

/**
 * `SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it, from any of the ways a
 * fingerprint gets written down: with or without the `SHA256:` prefix, with or without `=`
 * padding, or as 64 hex digits. Undefined when the text is no SHA-256 fingerprint.
 */
export function normaliseFingerprint(text: string): string | undefined {
  const bare = text.trim().replace(/^sha256:/i, '');
  let digest: Buffer;
  if (/^[0-9a-f]{64}$/i.test(bare)) digest = Buffer.from(bare, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=?$/.test(bare)) digest = Buffer.from(bare, 'base64');
  else return undefined;
  if (digest.length !== 32) return undefined;
  return `SHA256:${digest.toString('base64').replace(/=+$/, '')}`;
}

/** `user@host:port`, for messages. */
export function describeTarget(target: SshTarget): string {
  return `${target.user}@${target.host}:${target.port}`;
}

export function hostKeyMismatch(target: SshTarget, expected: string, got: string, site?: string): MeshError {
  const where = `${target.host}:${target.port}`;
  const key = site ? `sites.${site}.ssh.host_key_sha256` : 'ssh.host_key_sha256';
  return new MeshError(
    'SSH_HOST_KEY_MISMATCH',
    `SSH host key mismatch for ${where}: expected ${expected} (${key}), got ${got}. ` +
      'The connection was refused before authenticating; nothing was sent or written. ' +
      `Either something else answers at ${where}, or the server's host key changed. ` +
      `Ask the administrator of ${site ?? where} for the key's fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on that machine); ` +
      `only if it matches ${got}, put that value in ${key}.`,
  );
}

/**
 * Opens an authenticated SSH session. Rejects with SSH_HOST_KEY_MISMATCH when the server's
 * key is not the pinned one, SSH_FAILED when it cannot connect or authenticate (or in time),
 * ABORTED when the signal fires first, CONFIG_INVALID for an unusable fingerprint or key file.
 * The caller ends the returned client.
 */
export async function connectSsh(target: SshTarget, options: SshConnectOptions = {}): Promise<Client> {
  const where = `${target.host}:${target.port}`;
  const pinned = normaliseFingerprint(target.host_key_sha256);
  if (!pinned) {
    throw new MeshError(
      'CONFIG_INVALID',
      `the pinned host key of ${where} (${JSON.stringify(target.host_key_sha256)}) is no SHA-256 fingerprint; write it as ssh-keygen -lf prints it: "SHA256:<43 base64 characters>"`,
    );
  }
  if (options.signal?.aborted) throw new MeshError('ABORTED', `SSH connection to ${where} aborted before it started`);
  let privateKey: Buffer;
  try {
    privateKey = await readFile(target.identity_file);
  } catch (cause) {
    throw new MeshError(
      'CONFIG_INVALID',
      `cannot read the SSH identity file ${target.identity_file} for ${describeTarget(target)}: ${errorMessage(cause)}; point ssh.identity_file at the private key authorized for ${target.user} there`,
      { cause },
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return new Promise<Client>((resolve, reject) => {
    const client = new Client();
    const socket = tcpConnect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    let presented: string | undefined;
    let settled = false;

    const finish = (error?: MeshError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (!error) return resolve(client);
      client.end();
      socket.destroy();
      reject(error);
    };
    const onAbort = () => finish(new MeshError('ABORTED', `SSH connection to ${where} aborted`));
    const timer = setTimeout(
      () =>
        finish(
          new MeshError(
            'SSH_FAILED',
            `no SSH session with ${describeTarget(target)} within ${timeoutMs} ms; check that the host is reachable and sshd answers on port ${target.port}`,
          ),
        ),
      timeoutMs,
    );
    options.signal?.addEventListener('abort', onAbort, { once: true });

    socket.once('error', (cause) => finish(new MeshError('SSH_FAILED', `cannot connect to ${where}: ${cause.message}`, { cause })));
    client.once('ready', () => finish());
    client.on('error', (cause: Error & { level?: string }) => {
      if (presented !== undefined && presented !== pinned) return finish(hostKeyMismatch(target, pinned, presented, options.site));
      if (cause.level === 'client-authentication') {
        return finish(
          new MeshError(
            'SSH_FAILED',
            `${describeTarget(target)} refused the key ${target.identity_file} (publickey authentication only, no password): add its public key to ~${target.user}/.ssh/authorized_keys there`,
            { cause },
          ),
        );
      }
      finish(new MeshError('SSH_FAILED', `SSH with ${describeTarget(target)} failed: ${cause.message}`, { cause }));
    });
    client.once('close', () => finish(new MeshError('SSH_FAILED', `${where} closed the connection during the SSH handshake`)));

    client.connect({
      sock: socket,
      username: target.user,
      privateKey,
      // Key authentication only: no password, no keyboard-interactive, no agent.
      tryKeyboard: false,
      hostHash: 'sha256',
      hostVerifier: (hex: string) => {
        presented = normaliseFingerprint(hex) ?? `(unreadable: ${hex})`;
        return presented === pinned;
      },
      readyTimeout: timeoutMs,
      keepaliveInterval: options.keepaliveMs ?? 15_000,
      keepaliveCountMax: 4,
    });
  });
}
