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

const port = (address: string | undefined) => (address ? Number.parseInt(address.split(':')[1], 16) : -1);

/** The inode of the client's end: local port = the client's, remote port = ours (TIME_WAIT entries have inode 0). */
function socketInode(clientPort: number, serverPort: number): string | undefined {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of read(table).split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (port(fields[1]) === clientPort && port(fields[2]) === serverPort && fields[9] && fields[9] !== '0') return fields[9];
    }
  }
  return undefined;
}

/** Whether process `pid` holds the socket `target` (`socket:[inode]`) among its file descriptors. */
function holds(pid: string, target: string): boolean {
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/**
 * The processes that owned recent connections, latest first, looked at before all others: a
 * server's clients (agents, the coordinator, its own replication) connect again and again, and
 * reading every process's descriptors cost 10–20 ms of system time per connection on a busy machine.
 */
const RECENT_OWNERS = 16;

function ownerOf(inode: string, recent: string[]): { pid: number; cmdline: string } | undefined {
  const target = `socket:[${inode}]`;
  const others = () => readdirSync('/proc').filter((entry) => /^\d+$/.test(entry) && !recent.includes(entry));
  const pid = recent.find((p) => holds(p, target)) ?? others().find((p) => holds(p, target));
  if (pid === undefined) return undefined;
  recent.splice(0, recent.length, pid, ...recent.filter((p) => p !== pid).slice(0, RECENT_OWNERS - 1));
  return { pid: Number(pid), cmdline: read(`/proc/${pid}/cmdline`).split('\0').filter(Boolean).join(' ') };
}

/**
 * Appends one JSON line per connection when it closes: the client's address and port, the
 * process behind it (looked up when the connection is accepted and, failing that, when its
 * first bytes arrive — the client is then waiting for an answer, so it is alive) and how many
 * bytes it sent. A connection that closes before sending anything may stay unnamed.
 */
export function recordClients(file: string): (socket: Socket) => void {
  const recent: string[] = [];
  return (socket) => {
    const { remoteAddress, remotePort, localPort } = socket;
    if (!remotePort || !localPort) return;
    const lookUp = () => {
      const inode = socketInode(remotePort, localPort);
      return inode ? ownerOf(inode, recent) : undefined;
    };
    let owner = lookUp();
    if (!owner) socket.once('data', () => (owner ??= lookUp()));
    socket.once('close', () => {
      appendFileSync(
        file,
        `${JSON.stringify({ address: remoteAddress, port: remotePort, pid: owner?.pid ?? null, cmdline: owner?.cmdline ?? null, bytes_read: socket.bytesRead })}\n`,
      );
    });
  };
}
