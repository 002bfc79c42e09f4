import { randomBytes } from 'node:crypto';
import { openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MeshConfig } from '../config/types.js';
import { type MeshStatus, meshStatus } from '../coordinator/status.js';
import { Database } from '../core/couch.js';
import type { DaqDocument } from '../core/document.js';
import { MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { sleep } from '../core/sleep.js';
import { isComplete } from '../core/state.js';

export const EXAMPLES = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'steps');

/** What the simulation found on this machine and started: each optional, each replaced by a local stand-in. */
export interface SimulationServices {
  ssh?: { host: string; port: number; user: string; identity_file: string; host_key_sha256: string };
  slurm?: boolean;
  natsUrl?: string;
}

/** The reference topology on loopback: modane (unreachable, long-running), kit (public), lyon (batch, on kit's server). */
export function simulationConfig(work: string, urls: { modane: string; kit: string }, services: SimulationServices) {
  const node = process.execPath;
  const mesh = [node, resolve(dirname(fileURLToPath(import.meta.url)), 'main.js')];
  const lyonStorage = join(work, 'lyon', 'storage');
  return {
    database: 'datadb',
    doc_type: 'daqdocument',
    sites: {
      modane: { server: urls.modane, reachable: false, long_running: true, may_run: ['proc0'], storage: join(work, 'modane', 'daq'), log_dir: join(work, 'modane', 'logs') },
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
    ingest: { site: 'modane', pattern: '^(?<run_name>[d-n][a-m]\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: [
      services.ssh
        ? { name: 'proc0', site: 'modane', executor: 'sftp', to: 'lyon', out: join(lyonStorage, 'raw', '{run_name}_{file_number}'), timeout_s: 120, max_attempts: 3, lease_s: 30 }
        : { name: 'proc0', site: 'modane', run: [node, join(EXAMPLES, 'transfer.mjs'), '{file}', '{out}'], out: join(lyonStorage, 'raw', '{run_name}_{file_number}'), timeout_s: 120, max_attempts: 3, lease_s: 30 },
      { name: 'proc1', site: 'lyon', run: [node, join(EXAMPLES, 'convert.mjs'), '{prev_out}', '{out}'], out: join(lyonStorage, 'converted', '{run_name}_{file_number}.txt'), timeout_s: 120, max_attempts: 3, lease_s: 30 },
      { name: 'proc2', site: 'lyon', run: [node, join(EXAMPLES, 'analyse.mjs'), '{prev_out}', '{out}'], out: join(lyonStorage, 'analysis', '{run_name}_{file_number}.json'), timeout_s: 120, max_attempts: 3, lease_s: 30 },
    ],
    agent: { sweep_s: 2, heartbeat_s: 2, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
    coordinator: { site: 'modane', interval_s: 1 },
    ...(services.natsUrl ? { nats: { url: services.natsUrl } } : {}),
  };
}

/** Sample DAQ files numbered from `first`, each with the `.closed` marker a DAQ writes when it is done with a file. */
export async function writeSampleFiles(dir: string, count: number, first = 0): Promise<void> {
  for (let i = first; i < first + count; i++) {
    const run = `lg23b${String(Math.floor(i / 100)).padStart(3, '0')}`;
    const file = join(dir, run, `${run}_${String(i % 100).padStart(3, '0')}`);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, randomBytes(4096));
    await writeFile(`${file}.closed`, '');
  }
}

/** Documents complete on every server, with the same winning revision everywhere. */
async function completeEverywhere(config: MeshConfig, dbs: Database[], files: number): Promise<boolean> {
  const revisions: Array<Map<string, string>> = [];
  for (const db of dbs) {
    const { rows } = await db.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0', conflicts: true });
    const done = rows.filter((r) => r.doc && isComplete(r.doc, config) && !r.doc._conflicts);
    if (done.length < files) return false;
    revisions.push(new Map(done.map((r) => [r.id as string, r.doc?._rev as string])));
  }
  return revisions.every((m) => [...m].every(([id, rev]) => revisions[0].get(id) === rev));
}

function progressLine(config: MeshConfig, status: MeshStatus, files: number): string {
  return status.databases
    .map((db) => (db.reachable ? `${db.site}: ${config.steps.map((s) => `${s.name} ${db.steps[s.name]?.done ?? 0}/${files}`).join(' ')}` : `${db.site}: unreachable`))
    .join(' | ');
}

/** Shows progress per server and step until every file is done everywhere; fails when nothing moves for two minutes. */
export async function waitForEverywhere(config: MeshConfig, open: (site: string) => Database, files: number, logger: Logger, signal?: AbortSignal): Promise<MeshStatus> {
  const dbs = [open('modane'), open('kit')];
  let previous = '';
  let lastProgress = Date.now();
  while (!signal?.aborted) {
    const status = await meshStatus(config, (site) => open(site.name));
    const line = progressLine(config, status, files);
    if (line !== previous) {
      previous = line;
      lastProgress = Date.now();
      if (process.stderr.isTTY) process.stderr.write(`\r${line}   `);
      else logger.info(line);
    }
    const failed = status.databases.flatMap((db) => Object.entries(db.steps).filter(([, c]) => c.failed > 0).map(([step, c]) => `${db.site} ${step}: ${c.failed}`));
    if (failed.length > 0) throw new MeshError('STEP_FAILED', `steps failed (${failed.join(', ')}); see mesh status`);
    if (await completeEverywhere(config, dbs, files)) return status;
    if (Date.now() - lastProgress > 120_000) throw new MeshError('STEP_FAILED', `no progress for 120 s (${line})`);
    await sleep(500, signal);
  }
  throw new MeshError('ABORTED', 'simulation interrupted');
}

export function logFile(work: string): number {
  return openSync(join(work, 'processes.log'), 'a');
}
