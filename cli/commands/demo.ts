import { Command } from 'commander';
import { openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ingestDirectory } from '../../agents/ingest.js';
import { parseMeshConfig } from '../../config/load.js';
import { type MeshStatus, meshStatus } from '../../coordinator/status.js';
import { pushDesigns } from '../../store/designs.js';
import { Database } from '../../store/database.js';
import { MeshError } from '../../core/errors.js';
import { sleep } from '../../core/sleep.js';
import { type GlobalOptions, makeLogger } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';
import { type ServerChild, spawnMesh, startServerChild, stopChild } from '../processes.js';
import { writeSampleFiles } from '../simulate.js';
import { EXAMPLES } from '../simulation-config.js';

/** The demo pipeline: three example programs, run by the one demo site. */
function demoConfig(serverUrl: string, work: string) {
  const node = process.execPath;
  return {
    database: 'datadb',
    doc_type: 'daqdocument',
    sites: { demo: { server: serverUrl, reachable: true, long_running: true, log_dir: join(work, 'logs') } },
    ingest: { site: 'demo', pattern: '^(?<run_name>[d-n][a-m]\\d\\d[a-z]\\d{3})_(?<file_number>\\d{3})$', quiet_s: 600 },
    steps: [
      {
        name: 'proc0',
        site: 'demo',
        run: [node, join(EXAMPLES, 'transfer.mjs'), '{file}', '{out}'],
        out: join(work, 'lyon', 'raw', '{run_name}_{file_number}'),
        timeout_s: 60,
        max_attempts: 3,
        lease_s: 30,
      },
      {
        name: 'proc1',
        site: 'demo',
        run: [node, join(EXAMPLES, 'convert.mjs'), '{prev_out}', '{out}'],
        out: join(work, 'lyon', 'converted', '{run_name}_{file_number}.txt'),
        timeout_s: 60,
        max_attempts: 3,
        lease_s: 30,
      },
      {
        name: 'proc2',
        site: 'demo',
        run: [node, join(EXAMPLES, 'analyse.mjs'), '{prev_out}', '{out}'],
        out: join(work, 'lyon', 'analysis', '{run_name}_{file_number}.json'),
        timeout_s: 60,
        max_attempts: 3,
        lease_s: 30,
      },
    ],
    agent: { sweep_s: 2, heartbeat_s: 2, retry_base_s: 1, retry_cap_s: 10, grace_s: 10 },
  };
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('one site end to end on this machine: embedded server, sample files, agents through proc0..proc2')
    .option('--files <n>', 'number of sample DAQ files', positiveInteger, 20)
    .option('--agents <n>', 'agent processes', positiveInteger, 2)
    .option('--json', 'print the final `mesh status --json` as the last line')
    .option('--keep', 'keep the temporary folder')
    .action(
      action(async (options: { files: number; agents: number; json?: boolean; keep?: boolean }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const logger = makeLogger(globals, { site: 'demo' });
        const work = await mkdtemp(join(tmpdir(), 'mesh-demo-'));
        const env = { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' };
        const log = openSync(join(work, 'processes.log'), 'a');
        let server: ServerChild | undefined;
        const agents: ReturnType<typeof spawnMesh>[] = [];
        try {
          logger.info({ work }, 'starting the embedded server');
          server = await startServerChild('demo', join(work, 'couch'), { env, logFile: log });
          const raw = demoConfig(server.url, work);
          const configFile = join(work, 'mesh.json');
          await writeFile(configFile, JSON.stringify(raw, null, 2));
          const config = parseMeshConfig(raw, configFile);
          const db = new Database({ url: server.url, database: config.database });
          await db.ensure();
          await pushDesigns(db, config);
          await writeSampleFiles(join(work, 'daq'), options.files);
          const ingested = await ingestDirectory(join(work, 'daq'), {
            db,
            docType: config.doc_type,
            ingest: config.ingest,
            stepNames: config.steps.map((s) => s.name),
            site: 'demo',
          });
          logger.info({ created: ingested.created }, 'sample files catalogued');
          for (let i = 1; i <= options.agents; i++) {
            agents.push(spawnMesh(['--config', configFile, 'agent', '--site', 'demo', '--name', `demo-${i}`, '--concurrency', '4'], { env, logFile: log }));
          }
          const final = await waitForCompletion(config, db, options.files, logger);
          process.stderr.write('\n');
          logger.info(`all ${options.files} files went through ${config.steps.map((s) => s.name).join(', ')}`);
          await Promise.all(agents.map((a) => stopChild(a)));
          const status = await meshStatus(config, () => db);
          if (options.json) process.stdout.write(`${JSON.stringify(status)}\n`);
          void final;
        } finally {
          await Promise.all(agents.map((a) => stopChild(a)));
          await server?.stop();
          if (!options.keep) await rm(work, { recursive: true, force: true });
          else logger.info({ work }, 'kept the demo folder');
        }
      }),
    );
}

/** Shows per-step progress until every file has passed the last step; fails when nothing moves for a minute. */
async function waitForCompletion(
  config: ReturnType<typeof parseMeshConfig>,
  db: Database,
  files: number,
  logger: ReturnType<typeof makeLogger>,
): Promise<MeshStatus> {
  const last = config.steps[config.steps.length - 1].name;
  let lastProgress = Date.now();
  let previous = '';
  while (true) {
    const status = await meshStatus(config, () => db);
    const steps = status.databases[0].steps;
    const line = config.steps
      .map((s) => `${s.name} ${steps[s.name].done}/${files}${steps[s.name].failed ? ` (${steps[s.name].failed} failed)` : ''}`)
      .join('  ');
    if (line !== previous) {
      lastProgress = Date.now();
      if (process.stderr.isTTY) process.stderr.write(`\r${line}   `);
      else logger.info(line);
      previous = line;
    }
    const failed = config.steps.reduce((n, s) => n + steps[s.name].failed, 0);
    if (steps[last].done + failed >= files) {
      if (failed > 0) throw new MeshError('STEP_FAILED', `${failed} steps failed; see mesh status`);
      return status;
    }
    if (Date.now() - lastProgress > 60_000) throw new MeshError('STEP_FAILED', `no progress for 60 s (${line})`);
    await sleep(300);
  }
}
