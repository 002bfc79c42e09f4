/**
 * Records which process opened each TCP connection to this server (Linux, loopback), so a
 * test can prove who talks to whom — e.g. that nothing outside modane ever connects to
 * modane's server. The client socket is found in /proc/net/tcp by its port, its owner by the
 * socket inode among /proc/<pid>/fd. It runs synchronously when the connection is accepted,
 * while the client is certainly still waiting for its answer; it blocks the server for a few
 * milliseconds per connection: a test aid, never for production.
 */
import { appendFileSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function socketInode(localPort: number): string | undefined {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of read(table).split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1] && Number.parseInt(fields[1].split(':')[1], 16) === localPort) return fields[9];
    }
  }
  return undefined;
}

function ownerOf(inode: string): { pid: number; cmdline: string } | undefined {
  const target = `socket:[${inode}]`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link = '';
      try {
        link = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link === target) return { pid: Number(entry), cmdline: read(`/proc/${entry}/cmdline`).split('\0').filter(Boolean).join(' ') };
    }
  }
  return undefined;
}

/** Appends one JSON line per accepted connection: the client's address, port, pid and command line. */
export function recordClients(file: string): (socket: Socket) => void {
  return (socket) => {
    const { remoteAddress, remotePort } = socket;
    if (!remotePort) return;
    const inode = socketInode(remotePort);
    const owner = inode ? ownerOf(inode) : undefined;
    appendFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), address: remoteAddress, port: remotePort, pid: owner?.pid ?? null, cmdline: owner?.cmdline ?? null })}\n`);
  };
}
