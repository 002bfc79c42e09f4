/**
 * What one `mesh` process costs, spawn to exit, for the two that every document batch handed to
 * lyon starts (`mesh agent --once` over SSH, `mesh run-batch` in the batch job), against a bare
 * `node -e 0` measured in the same run: the floor of any Node process. Both against a real
 * embedded server with nothing to do (a batch site with no ready document, a job file whose one
 * document is not queued), so the figures are start-up, the pass's few requests and exit.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MESH_MAIN } from '../cli/processes.js';
import { parseMeshConfig } from '../config/load.js';
import { silentLogger } from '../core/log.js';
import { startEmbeddedServer } from '../server/embedded.js';
import { Database } from '../store/database.js';
import { pushDesigns } from '../store/designs.js';
import { type BenchRow, median, ms, ratio } from './report.js';

const run = promisify(execFile);

export async function measureStartup(times: number): Promise<BenchRow[]> {
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-startup-'));
  const server = await startEmbeddedServer({ site: 'kit', dataDir: join(work, 'data'), logger: silentLogger() });
  try {
    const raw = {
      database: 'startup',
      doc_type: 'daqdocument',
      sites: {
        modane: { server: server.url, reachable: false, long_running: true },
        lyon: {
          server: server.url,
          reachable: true,
          long_running: false,
          log_dir: join(work, 'logs'),
          batch: { system: 'slurm', options: [], docs_per_job: 10, mesh: ['/bin/false'] },
        },
      },
      ingest: { site: 'modane', pattern: '^(?<run_name>[a-z]+)_(?<file_number>\\d+)$', quiet_s: 1 },
      steps: [
        { name: 'proc0', site: 'modane', run: ['/bin/true'], out: join(work, '{run_name}_{file_number}') },
        { name: 'proc1', site: 'lyon', run: ['/bin/true'], out: join(work, '{run_name}_{file_number}.1') },
      ],
    };
    const configFile = join(work, 'mesh.json');
    await writeFile(configFile, JSON.stringify(raw));
    const db = new Database({ url: server.url, database: raw.database });
    await db.ensure();
    await pushDesigns(db, parseMeshConfig(raw, configFile));
    const jobFile = join(work, 'job.json');
    const job = { version: 1, site: 'lyon', step: 'proc1', stdout: join(work, 'job.out'), stderr: join(work, 'job.err'), docs: ['run_x_1'] };
    await writeFile(jobFile, JSON.stringify(job));

    const cases: Array<{ measure: string; args: string[] }> = [
      { measure: '`node -e 0`', args: ['-e', '0'] },
      { measure: '`mesh --help`', args: [MESH_MAIN, '--help'] },
      {
        measure: '`mesh agent --site lyon --once` (batch site, nothing ready)',
        args: [MESH_MAIN, '--config', configFile, 'agent', '--site', 'lyon', '--once'],
      },
      { measure: '`mesh run-batch JOB` (one document, not queued for it)', args: [MESH_MAIN, '--config', configFile, 'run-batch', jobFile, '--site', 'lyon'] },
    ];
    const seconds = cases.map(() => [] as number[]);
    // Interleaved, so that a busy moment of the machine weighs on every case alike.
    for (let i = 0; i < times; i++)
      for (const [index, { args }] of cases.entries()) {
        const started = performance.now();
        await run(process.execPath, args, { env: { ...process.env, MESH_LOG_LEVEL: 'warn' } });
        seconds[index].push(performance.now() - started);
      }
    const floor = median(seconds[0]);
    return cases.map(({ measure }, index) => ({
      measure: `  ${measure}`,
      value: ms(median(seconds[index])),
      ...(index === 0 ? {} : { baseline: `${ms(floor)} \`node -e 0\``, ratio: ratio(median(seconds[index]), floor) }),
    }));
  } finally {
    await server.close();
    await rm(work, { recursive: true, force: true });
  }
}
