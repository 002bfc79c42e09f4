/**
 * `daq_buffer_low`: the DAQ buffer's free space, as `mesh ingest` last measured it at the DAQ site
 * (agents/daq-buffer.ts, in its heartbeat), is below `alerts.daq_free_min`. The alert names the
 * bytes `mesh purge` could free now: a cheap estimate from the documents (the files with a
 * verified agreeing copy at another site, store/custody.ts purgeableBytes), no file read, no age
 * limit applied. Read from the first server that answers (heartbeats and documents replicate).
 */
import { DEFAULT_COPIES } from '../core/custody.js';
import type { MeshConfig } from '../config/types.js';
import { formatBytes } from '../core/bytes.js';
import { formatDuration } from '../core/duration.js';
import { purgeableBytes } from '../store/custody.js';
import { type AgentHeartbeat, type DaqBuffer, readHeartbeats } from '../store/heartbeats.js';
import type { Alert } from './alert.js';
import { type OpenDatabase, distinctServers } from './servers.js';

export interface DaqEvidence {
  /** The newest measurement of the DAQ site's buffer, and who made it. */
  buffer: DaqBuffer;
  by: string;
  /** Bytes a purge with the default copies could free, null when no server answered the query. */
  purgeable_bytes: number | null;
}

/** The newest measurement of `site`'s buffer among these heartbeats. */
export function newestBuffer(beats: readonly AgentHeartbeat[], site: string): { buffer: DaqBuffer; by: string } | undefined {
  let newest: { buffer: DaqBuffer; by: string } | undefined;
  for (const beat of beats) {
    const buffer = beat.daq_buffer;
    if (beat.site !== site || !buffer || typeof buffer.free_bytes !== 'number') continue;
    if (!newest || buffer.measured_at > newest.buffer.measured_at) newest = { buffer, by: `${beat.site}/${beat.agent}` };
  }
  return newest;
}

/** The evidence, when the alert is configured and any server has a measurement. */
export async function readDaqEvidence(config: MeshConfig, open: OpenDatabase): Promise<DaqEvidence | undefined> {
  if (config.alerts.daq_free_min === undefined) return undefined;
  const daq = config.ingest.site;
  // The DAQ site's own server first: it has the measurement soonest.
  const servers = distinctServers(config).sort((a, b) => Number(b.server === config.sites[daq]?.server) - Number(a.server === config.sites[daq]?.server));
  for (const site of servers) {
    try {
      const db = open(site);
      const newest = newestBuffer(await readHeartbeats(db), daq);
      if (!newest) continue;
      const purgeable = await purgeableBytes(db, DEFAULT_COPIES).catch(() => null);
      return { ...newest, purgeable_bytes: purgeable };
    } catch {
      // The next server: any replica tells.
    }
  }
  return undefined;
}

/** The alert, pure over the evidence. */
export function daqBufferAlerts(evidence: DaqEvidence | undefined, config: MeshConfig, now: Date): Alert[] {
  const min = config.alerts.daq_free_min;
  if (min === undefined || !evidence || evidence.buffer.free_bytes >= min) return [];
  const daq = config.ingest.site;
  const { buffer } = evidence;
  const age = (now.getTime() - Date.parse(buffer.measured_at)) / 1000;
  const freeable =
    evidence.purgeable_bytes === null
      ? 'how much mesh purge could free is unknown (the view did not answer)'
      : `mesh purge could free about ${formatBytes(evidence.purgeable_bytes)} now (files with ${DEFAULT_COPIES === 1 ? 'a verified copy' : `${DEFAULT_COPIES} verified copies`} elsewhere, before the age limit)`;
  return [
    {
      kind: 'daq_buffer_low',
      key: `daq_buffer_low:${daq}`,
      message:
        `${daq}'s DAQ buffer ${buffer.dir} has ${formatBytes(buffer.free_bytes)} free of ${formatBytes(buffer.total_bytes)}, below alerts.daq_free_min ${formatBytes(min)} ` +
        `(measured ${formatDuration(Math.max(0, age))} ago by ${evidence.by}); ${freeable}`,
      action:
        `Run \`mesh purge --site ${daq}\` (a dry run: it lists what would go and why the rest stays), then with \`--yes\`. ` +
        'If it can free little, the copies are not verified yet: check that the custody steps run and that the agents of the sites holding the copies run (their custody records replicate back), ' +
        'or that the transfer is keeping up (a step_stalled or replication_behind alert says why).',
      since: buffer.measured_at,
    },
  ];
}
