/**
 * The authorized_keys line for the key other sites use to reach this one (its `ssh` profile):
 * forced command, no pty, no forwarding of any kind, no ~/.ssh/rc. The forced command is a
 * small POSIX `case` on SSH_ORIGINAL_COMMAND (the command the client asked for), compared as a
 * string and never evaluated:
 * - the trigger's pass, exactly as agents/trigger.ts sends it (every word single-quoted), runs
 *   that pass, and nothing else with it;
 * - when an `sftp` step lands on this site through the same key: the SFTP subsystem
 *   (sftp-server), and the transfer's `sha256sum -- '<path>'` check (the path taken out of its
 *   quotes as data; a path holding a quote is refused and the transfer reads the file back
 *   instead);
 * - anything else is refused with exit status 1.
 * A refused command therefore does nothing at all, rather than starting a pass nobody asked for.
 */
import { readFileSync } from 'node:fs';
import { remoteAgentArgv } from '../../agents/trigger.js';
import { MeshError, errorMessage } from '../../core/errors.js';
import type { SitePlan } from './plan.js';
import { authorizedKeysCommand, doubleQuoted, shellLine, shellWord } from './quote.js';

/** Debian's; RHEL has /usr/libexec/openssh/sftp-server (`--sftp-server`). */
export const DEFAULT_SFTP_SERVER = '/usr/lib/openssh/sftp-server';

export const RESTRICTIONS = ['no-pty', 'no-port-forwarding', 'no-agent-forwarding', 'no-X11-forwarding', 'no-user-rc', 'restrict'] as const;

/** What the key is for on this site. */
export interface GateUses {
  /** The trigger's pass (the argument vector it sends). */
  pass?: readonly string[];
  /** SFTP transfers land here: the sftp-server program to run. */
  sftpServer?: string;
}

export function gateUses(plan: SitePlan, sftpServer = DEFAULT_SFTP_SERVER): GateUses {
  return {
    ...(plan.triggeredBy.length > 0 ? { pass: remoteAgentArgv(plan.site) } : {}),
    ...(plan.transfersIn.length > 0 ? { sftpServer } : {}),
  };
}

/** The forced command, as the account's login shell gets it after `-c`. */
export function gateScript(uses: GateUses): string {
  const branches: string[] = [];
  const allowed: string[] = [];
  if (uses.pass) {
    const line = shellLine(uses.pass);
    branches.push(`${doubleQuoted(line)}) exec ${line};;`);
    allowed.push(`the pass ${uses.pass.slice(-4).join(' ')}`);
  }
  if (uses.sftpServer) {
    const server = shellWord(uses.sftpServer);
    branches.push(`internal-sftp|'internal-sftp '*|${server}|${shellWord(`${uses.sftpServer} `)}*) exec ${server};;`);
    const prefix = doubleQuoted("'sha256sum' '--' '");
    branches.push(`${prefix}*"'") p=\${SSH_ORIGINAL_COMMAND#${prefix}}; p=\${p%"'"}; case "$p" in *"'"*) exit 1;; esac; exec sha256sum -- "$p";;`);
    allowed.push('SFTP and its sha256sum check');
  }
  if (branches.length === 0) throw new MeshError('CONFIG_INVALID', 'no site reaches this one over SSH: there is no key to restrict');
  branches.push(`*) echo ${shellWord(`couchmesh: refused; this key may run only ${allowed.join(' and ')}`)} >&2; exit 1;;`);
  return `case "$SSH_ORIGINAL_COMMAND" in ${branches.join(' ')} esac`;
}

/** A public key as ssh-keygen writes it (`type base64 [comment]`); a private key is refused by name. */
export function readPublicKey(file: string): { type: string; key: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new MeshError('BAD_INPUT', `cannot read the public key ${file}: ${errorMessage(cause)}`, { cause });
  }
  if (/PRIVATE KEY/.test(text)) throw new MeshError('BAD_INPUT', `${file} is a private key: pass its .pub (the private key never leaves the connecting site)`);
  const match = /^\s*((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})(?:\s.*)?$/.exec(text.split(/\r?\n/).find((l) => l.trim()) ?? '');
  if (!match) throw new MeshError('BAD_INPUT', `${file} is not an OpenSSH public key ("ssh-ed25519 AAAA… comment", as ssh-keygen writes the .pub)`);
  return { type: match[1], key: match[2] };
}

export function authorizedKeysLine(plan: SitePlan, publicKey: { type: string; key: string }, options: { sftpServer?: string; from?: string } = {}): string {
  const uses = gateUses(plan, options.sftpServer);
  if (options.from !== undefined && !/^[A-Za-z0-9.:*?!,/_-]+$/.test(options.from))
    throw new MeshError(
      'BAD_INPUT',
      `--ssh-from ${JSON.stringify(options.from)} is not an authorized_keys from= pattern list (host names or addresses, * ? ! , /)`,
    );
  const restrictions = [authorizedKeysCommand(gateScript(uses)), ...RESTRICTIONS, ...(options.from ? [`from="${options.from}"`] : [])];
  const who = [...new Set([...plan.triggeredBy.map((s) => s.name), ...plan.transfersIn.map((s) => s.site)])].join('+');
  return `${restrictions.join(',')} ${publicKey.type} ${publicKey.key} couchmesh:${who}-to-${plan.site.name}\n`;
}
