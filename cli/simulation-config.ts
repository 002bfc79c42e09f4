/** The configuration of the reference topology (modane, kit, lyon) as `mesh simulate` runs it on loopback. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const EXAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'steps');

/** Choices of the simulation that are not services. */
export interface SimulationConfigOptions {
  /** Attempts of every step before it is failed (default 3). */
  maxAttempts?: number;
  /** proc0's copy at lyon is a custody copy: lyon's agent verifies it, `mesh purge` at modane counts it (`mesh simulate --purge`). */
  custody?: boolean;
  /** Seconds between two coordinator rounds (default 1). */
  coordinatorIntervalS?: number;
}

/** What the simulation found on this machine and started: each optional, each replaced by a local stand-in. */
export interface SimulationServices {
  ssh?: { host: string; port: number; user: string; identity_file: string; host_key_sha256: string };
  slurm?: boolean;
  natsUrl?: string;
}

/** The reference topology on loopback: modane (unreachable, long-running), kit (public), lyon (batch, on kit's server). */
export function simulationConfig(work: string, urls: { modane: string; kit: string }, services: SimulationServices, options: SimulationConfigOptions = {}) {
  const max_attempts = options.maxAttempts ?? 3;
  const node = process.execPath;
  const mesh = [node, resolve(dirname(fileURLToPath(import.meta.url)), 'main.js')];
  const lyonStorage = join(work, 'lyon', 'storage');
  // The local stand-in for the transfer writes into lyon's storage too: `to` names the site holding the copy.
  const custody = options.custody ? { custody: true, to: 'lyon' } : {};
  return {
    database: 'datadb',
    doc_type: 'daqdocument',
    sites: {
      modane: {
        server: urls.modane,
        reachable: false,
        long_running: true,
        may_run: ['proc0', 'archive'],
        storage: join(work, 'modane', 'daq'),
        log_dir: join(work, 'modane', 'logs'),
      },
      kit: { server: urls.kit, reachable: true, long_running: true, may_run: [], log_dir: join(work, 'kit', 'logs') },
      lyon: {
        server: urls.kit,
        reachable: true,
        long_running: false,
        credentials_of: 'kit',
        may_run: ['proc1', 'proc2'],
        storage: lyonStorage,
        log_dir: join(work, 'lyon', 'logs'),
        ...(services.ssh ? { ssh: services.ssh } : {}),
        ...(services.slurm ? { batch: { system: 'slurm', options: [], docs_per_job: 10, mesh } } : {}),
      },
    },
    // A run closes with its `<run>.closed` marker (the sample DAQ writes one after a run's last file), else after run_quiet_s.
    ingest: { site: 'modane', pattern: '^(?<run_name>[d-n][a-m]\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600, run_quiet_s: 60 },
    steps: [
      services.ssh
        ? {
            name: 'proc0',
            site: 'modane',
            executor: 'sftp',
            to: 'lyon',
            out: join(lyonStorage, 'raw', '{run_name}_{file_number}.raw'),
            timeout_s: 120,
            max_attempts,
            lease_s: 30,
            ...custody,
          }
        : {
            name: 'proc0',
            site: 'modane',
            run: [node, join(EXAMPLES, 'transfer.mjs'), '{file}', '{out}'],
            out: join(lyonStorage, 'raw', '{run_name}_{file_number}.raw'),
            timeout_s: 120,
            max_attempts,
            lease_s: 30,
            ...custody,
          },
      {
        name: 'proc1',
        site: 'lyon',
        run: [node, join(EXAMPLES, 'convert.mjs'), '{prev_out}', '{out}'],
        out: join(lyonStorage, 'converted', '{run_name}_{file_number}.txt'),
        timeout_s: 120,
        max_attempts,
        lease_s: 30,
      },
      {
        name: 'proc2',
        site: 'lyon',
        run: [node, join(EXAMPLES, 'analyse.mjs'), '{prev_out}', '{out}'],
        out: join(lyonStorage, 'analysis', '{run_name}_{file_number}.json'),
        timeout_s: 120,
        max_attempts,
        lease_s: 30,
      },
      // Once per run, at the DAQ where the raw files are, once every file of the run is transferred: a verified archive (custody).
      {
        name: 'archive',
        site: 'modane',
        scope: 'run',
        after: 'proc0',
        custody: true,
        run: [node, join(EXAMPLES, 'archive-run.mjs'), '{run_name}', '{members_file}', '{out}'],
        out: join(work, 'modane', 'archive', '{run_name}.tar'),
        timeout_s: 300,
        max_attempts,
        lease_s: 30,
      },
    ],
    agent: { sweep_s: 2, heartbeat_s: 2, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
    coordinator: { site: 'modane', interval_s: options.coordinatorIntervalS ?? 1 },
    ...(services.natsUrl ? { nats: { url: services.natsUrl } } : {}),
  };
}
