import convict from 'convict';
import { ORIGINAL_DESIGN_DEFAULT } from './validate.js';

/** Seconds a metadata program may run when ingest.metadata_timeout_s is not given. */
export const METADATA_TIMEOUT_S = 30;

/**
 * The scalar part of the mesh config, checked by convict (types, defaults, unknown keys).
 * `sites` and `steps` are maps and lists of objects, which convict cannot describe; they are
 * checked in `load.ts` with the same kind of messages. Numbers are `'*'` here: convict would turn
 * "600" into 600 and "fast" into NaN; load.ts checks them as written (see checkSeconds).
 */
export function meshSchema() {
  return convict({
    database: { doc: 'Name of the CouchDB database holding the documents', format: String, default: 'datadb' },
    doc_type: { doc: 'Value of `type` in the documents this mesh drives', format: String, default: 'daqdocument' },
    original_design: {
      doc: "Name of the design document written for the original Edelweiss scripts' tools (_design/<name>)",
      format: String,
      default: ORIGINAL_DESIGN_DEFAULT,
    },
    sites: { doc: 'Map of site name to site profile (an object, or the path of a JSON profile)', format: '*', default: {} as unknown },
    ingest: {
      site: { doc: 'Site whose agent catalogues DAQ files', format: String, default: '' },
      pattern: {
        doc: 'Regular expression with named groups run_name and file_number, matched against file base names',
        format: String,
        default: '^(?<run_name>[d-n][a-m]\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$',
      },
      quiet_s: { doc: 'A file is closed when its size has not changed for this many seconds', format: '*', default: 600 as unknown },
      run_quiet_s: {
        doc: 'A run is closed when no new file of it was catalogued for this many seconds (or a <run_name>.closed marker exists); run-scope steps wait for it',
        format: '*',
        default: 3600 as unknown,
      },
      metadata: {
        doc: 'Program (argument vector, no shell) printing one JSON object of header fields for each new file, merged into its document; empty = none',
        format: '*',
        default: [] as unknown,
      },
      metadata_timeout_s: {
        doc: 'Seconds after which a metadata program still running is killed (the file is retried at the next scan)',
        format: '*',
        default: METADATA_TIMEOUT_S as unknown,
      },
    },
    steps: { doc: 'The chain of steps, in order', format: Array, default: [] as unknown[] },
    server_timeout_s: { doc: 'Seconds one request to a server may take, answer included, before it counts as failed', format: '*', default: 60 as unknown },
    server_max_answer_mib: { doc: 'Largest answer read from a server, in MiB; a longer one is refused', format: '*', default: 256 as unknown },
    coordinator: {
      site: { doc: 'Site whose machine runs the coordinator (default: the ingest site)', format: String, default: '' },
      interval_s: { doc: 'Seconds between two coordinator rounds', format: '*', default: 30 as unknown },
    },
    nats: {
      url: { doc: 'Optional NATS server (wake-up hints, cross-site claim registry); empty = none', format: String, default: '' },
    },
    targets: { doc: 'Latency targets: step name → duration from DAQ close ("90s", "30m", "2h", "1d")', format: '*', default: {} as unknown },
    alerts: {
      agent_silent_s: { doc: 'Seconds without a heartbeat after which a running agent is reported silent', format: '*', default: 120 as unknown },
      window_s: { doc: 'Seconds of finished files checked against the latency targets', format: '*', default: 3600 as unknown },
      hook: { doc: 'Command (argument vector) given each new or cleared alert as JSON on stdin; empty = none', format: '*', default: [] as unknown },
      hook_timeout_s: { doc: 'Seconds after which a hook still running is killed', format: '*', default: 10 as unknown },
      stalled_s: { doc: 'Seconds a step may have ready documents that nothing claims before it is reported stalled', format: '*', default: 600 as unknown },
      failing_runs: {
        doc: 'Runs started by a trigger, or batch jobs, that ended badly in a row after which the site is reported failing',
        format: '*',
        default: 3 as unknown,
      },
      unheard_s: { doc: 'Seconds a site may hold claims in flight while none of its agents is heard from', format: '*', default: 600 as unknown },
      replication_behind_s: { doc: 'Seconds a replication link may be behind (from the markers) before it is reported', format: '*', default: 300 as unknown },
      daq_free_min: {
        doc: 'Free space of the DAQ buffer (bytes, or "50GB") below which an alert is raised; null = none',
        format: '*',
        default: null as unknown,
      },
    },
    agent: {
      sweep_s: { doc: 'Seconds between two queries of the ready views', format: '*', default: 30 as unknown },
      heartbeat_s: {
        doc: 'Seconds between two looks at the heartbeat: it is written when what it says changed, else every max(heartbeat_s, alerts.agent_silent_s / 3) s',
        format: '*',
        default: 10 as unknown,
      },
      retry_base_s: { doc: 'First retry delay after a failed step', format: '*', default: 30 as unknown },
      retry_cap_s: { doc: 'Largest retry delay', format: '*', default: 3600 as unknown },
      grace_s: { doc: 'Seconds SIGTERM waits for running steps before releasing them', format: '*', default: 30 as unknown },
    },
  });
}
