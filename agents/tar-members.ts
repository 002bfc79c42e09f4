/**
 * Reads a tar archive back (ustar, GNU and pax long names) and hashes every regular file in it:
 * how a custody run step (an archive) proves that it holds each member with its catalogued
 * checksum. Streamed in chunks, so an archive of large files costs no memory.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

const BLOCK = 512;
const CHUNK = 1 << 20;

export interface TarEntry {
  size: number;
  sha256: string;
}

function text(header: Buffer, start: number, length: number): string {
  const field = header.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString('utf8');
}

/** A numeric field: octal text, or GNU's base-256 for sizes beyond 8 GiB. */
function numberField(header: Buffer, start: number, length: number): number {
  if ((header[start] & 0x80) !== 0) {
    let value = 0;
    for (let i = start + 1; i < start + length; i++) value = value * 256 + header[i];
    return value;
  }
  const digits = text(header, start, length).trim();
  return digits.length === 0 ? 0 : Number.parseInt(digits, 8);
}

/** The `path` of a pax extended header's records (`<length> <key>=<value>\n`). */
function paxPath(records: string): string | undefined {
  for (const line of records.split('\n')) {
    const match = /^\d+ path=(.*)$/s.exec(line);
    if (match) return match[1];
  }
  return undefined;
}

/** Every regular file of the archive at `path`, by its name in the archive. */
export async function tarEntries(path: string): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const file = await open(path, 'r');
  try {
    const { size: total } = await file.stat();
    const header = Buffer.alloc(BLOCK);
    let position = 0;
    let longName: string | undefined;
    // Each turn moves past one header and its data: the loop ends at the end of the file at the latest.
    while (position + BLOCK <= total) {
      await file.read(header, 0, BLOCK, position);
      if (header.every((b) => b === 0)) break;
      const size = numberField(header, 124, 12);
      const type = String.fromCharCode(header[156] || 48);
      const posix = text(header, 257, 6) === 'ustar';
      const prefix = posix ? text(header, 345, 155) : '';
      const name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
      const dataAt = position + BLOCK;
      if (type === 'L' || type === 'x') {
        const data = Buffer.alloc(size);
        await file.read(data, 0, size, dataAt);
        longName = type === 'L' ? data.toString('utf8').replace(/\0+$/, '') : (paxPath(data.toString('utf8')) ?? longName);
      } else {
        longName = undefined;
        if (type === '0' || type === '7') {
          const hash = createHash('sha256');
          const chunk = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
          for (let done = 0; done < size;) {
            const { bytesRead } = await file.read(chunk, 0, Math.min(chunk.length, size - done), dataAt + done);
            if (bytesRead === 0) throw new Error(`${path}: truncated inside ${name}`);
            hash.update(chunk.subarray(0, bytesRead));
            done += bytesRead;
          }
          entries.set(name, { size, sha256: hash.digest('hex') });
        }
      }
      position = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    }
  } finally {
    await file.close();
  }
  return entries;
}
