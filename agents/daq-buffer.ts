/**
 * The DAQ buffer's free space, measured where the DAQ is: `mesh ingest` (one pass, or each scan
 * with `--watch`) reads the file system of the directory it catalogues (statfs) and publishes it
 * in its own heartbeat document (`mesh-agent:<site>:ingest-<host>`, a control document the
 * site's agent account may write), from which the coordinator raises `daq_buffer_low`
 * (coordinator/daq-alert.ts). Only when `alerts.daq_free_min` is set: without it nobody reads it.
 */
import { statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Database } from '../store/database.js';
import { type AgentHeartbeat, type DaqBuffer, heartbeatId, writeHeartbeat } from '../store/heartbeats.js';

/** Free and total bytes of the file system holding `dir`, for unprivileged writers (`bavail`). */
export async function measureBuffer(dir: string, now: Date): Promise<DaqBuffer> {
  const fs = await statfs(dir);
  return { dir: resolve(dir), free_bytes: fs.bavail * fs.bsize, total_bytes: fs.blocks * fs.bsize, measured_at: now.toISOString() };
}

/** Publishes the buffer's measurements in the ingest process's heartbeat; each write on the revision it wrote last. */
export class BufferReporter {
  private rev: string | undefined;
  private readonly agent = `ingest-${hostname()}`;
  private readonly started = new Date().toISOString();

  constructor(
    private readonly db: Database,
    private readonly site: string,
    private readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Measures and writes; never throws (a failed measurement must not stop the catalogue). */
  async report(state: 'running' | 'stopped', now = new Date()): Promise<DaqBuffer | undefined> {
    try {
      const buffer = await measureBuffer(this.dir, now);
      const doc: AgentHeartbeat = {
        _id: heartbeatId(this.site, this.agent),
        type: 'mesh-agent',
        site: this.site,
        agent: this.agent,
        host: hostname(),
        pid: process.pid,
        started: this.started,
        last_seen: now.toISOString(),
        state,
        running: [],
        daq_buffer: buffer,
      };
      const written = await writeHeartbeat(this.db, doc, this.rev);
      this.rev = written.rev;
      if (!written.written && !written.superseded) this.logger.warn(`DAQ buffer measurement not published: ${written.reason}`);
      return buffer;
    } catch (error) {
      this.logger.warn(`cannot measure the DAQ buffer's free space at ${this.dir}: ${errorMessage(error)}`);
      return undefined;
    }
  }
}
