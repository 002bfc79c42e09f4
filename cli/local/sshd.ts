/**
 * A private OpenSSH daemon on 127.0.0.1 for the tests and `mesh simulate`: its own host key, one
 * authorized client key pair (both made with ssh-keygen in a temp folder), key
 * authentication only. It needs root (sshd refuses to run otherwise) and Debian's
 * `openssh-server`; without them the tests fail loudly instead of skipping.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';
const STARTUP_TIMEOUT_MS = 10_000;

export interface TestSshd {
  port: number;
  user: string;
  /** Private key authorized on the daemon (ed25519, no passphrase). */
  identityFile: string;
  /** The daemon's host key, `SHA256:<base64>` as `ssh-keygen -lf` prints it. */
  hostKeySha256: string;
  /** A known_hosts file pinning the daemon's host key, for the OpenSSH client (scp). */
  knownHostsFile: string;
  dir: string;
  /** Everything the daemon logged (it runs with -e). */
  output(): string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

/** `SHA256:…` of a public key file, as `ssh-keygen -lf` prints it. */
export async function fingerprint(publicKeyFile: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicKeyFile]);
  const match = /SHA256:[A-Za-z0-9+/]{43}/.exec(stdout);
  if (!match) throw new Error(`ssh-keygen -lf ${publicKeyFile} printed no SHA256 fingerprint: ${stdout}`);
  return match[0];
}

/** A fresh ed25519 key pair without passphrase; returns the private key's path. */
export async function makeKey(dir: string, name: string): Promise<string> {
  const file = join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `couchmesh-test-${name}`, '-f', file]);
  return file;
}

export interface SshdOptions {
  /** Let clients forward TCP ports (default no): a test of a key restricted by authorized_keys needs a daemon that would allow it. */
  allowTcpForwarding?: boolean;
}

export async function startSshd(options: SshdOptions = {}): Promise<TestSshd> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(`the SSH tests need root to run a private sshd (running as uid ${process.getuid?.()}); run them as root or in the project's container`);
  }
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: install Debian's openssh-server (apt-get install openssh-server) to run the SSH tests`);
  await mkdir('/run/sshd', { recursive: true });
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sshd-'));
  try {
    const hostKey = await makeKey(dir, 'host_ed25519');
    const identityFile = await makeKey(dir, 'client_ed25519');
    const authorizedKeys = join(dir, 'authorized_keys');
    await writeFile(authorizedKeys, await readFile(`${identityFile}.pub`), { mode: 0o600 });
    const hostKeySha256 = await fingerprint(`${hostKey}.pub`);
    const user = userInfo().username;
    let lastError: unknown;
    for (let tries = 0; tries < 3; tries++) {
      const port = await freePort();
      try {
        return await launch(dir, port, user, hostKey, identityFile, authorizedKeys, hostKeySha256, options);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function launch(
  dir: string,
  port: number,
  user: string,
  hostKey: string,
  identityFile: string,
  authorizedKeys: string,
  hostKeySha256: string,
  options: SshdOptions,
): Promise<TestSshd> {
  const configFile = join(dir, 'sshd_config');
  await writeFile(
    configFile,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      `AllowTcpForwarding ${options.allowTcpForwarding ? 'yes' : 'no'}`,
      'X11Forwarding no',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  const knownHostsFile = join(dir, 'known_hosts');
  const hostPublic = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await writeFile(knownHostsFile, `[127.0.0.1]:${port} ${hostPublic}\n`);

  const child = spawn(SSHD, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const log: string[] = [];
  const lines = createInterface({ input: child.stderr! });
  lines.on('line', (line) => log.push(line));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not listen within ${STARTUP_TIMEOUT_MS} ms:\n${log.join('\n')}`)), STARTUP_TIMEOUT_MS);
      lines.on('line', (line) => {
        if (line.includes(`Server listening on 127.0.0.1 port ${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`sshd exited (status ${code}, signal ${signal}) before listening:\n${log.join('\n')}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited(child);
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    port,
    user,
    identityFile,
    hostKeySha256,
    knownHostsFile,
    dir,
    output: () => log.join('\n'),
    stop: () => {
      stopping ??= (async () => {
        child.kill('SIGTERM');
        await exited(child);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** Kills every daemon still running; returns how many were (a leak). */
export async function stopAllSshd(): Promise<number> {
  const left = [...live];
  await Promise.all(
    left.map((child) => {
      child.kill('SIGKILL');
      return exited(child);
    }),
  );
  return left.length;
}
