import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ingestDirectory } from '../../agents/ingest.js';
import { SIMULATION_ROUND_S, writeSampleFiles } from '../../cli/simulate.js';
import { type Topology, logFile, startTopology } from '../../cli/topology.js';
import { type DaqDocument, stepRecord } from '../../core/document.js';
import { createLogger } from '../../core/log.js';
import { isComplete } from '../../core/state.js';
import { waitFor } from '../support/mesh.js';

const run = promisify(execFile);

/**
 * Found by the fault harness: lyon is woken only when documents are ready for it, so when every
 * lyon job was cancelled and nothing new arrived, no `--once` pass ever ran again to find the
 * jobs lost — the documents stayed `proc1 queued` / `in progress` for ever (7-day queued lease).
 * The modane agent now also wakes lyon, at a slower cadence, while lyon holds claims in flight.
 */
describe('a lost batch job is found although no new work arrives', function () {
  this.timeout(300_000);
  let topology: Topology | undefined;
  let work: string | undefined;

  after(async () => {
    await topology?.stop();
    if (work && !process.env.MESH_KEEP) await rm(work, { recursive: true, force: true });
  });

  it('cancels every lyon job once all documents are claimed; they still complete', async () => {
    work = await mkdtemp(join(tmpdir(), 'mesh-lostjob-'));
    // Every proc1 run hangs (examples/steps/fault-switch.mjs) until the jobs are cancelled.
    const switches = join(work, 'switches');
    await mkdir(switches);
    await writeFile(join(switches, 'convert.hang'), '');
    const env = { ...process.env, MESH_LOG_LEVEL: 'warn', MESH_FAULT_DIR: switches };
    topology = await startTopology({
      work,
      env,
      logFile: logFile(work),
      logger: createLogger({ level: 'warn' }),
      ssh: true,
      slurm: true,
      nats: false,
      // The coordinator only keeps replication going here: the simulation's cadence, not the fault harness's 1 s.
      coordinatorIntervalS: SIMULATION_ROUND_S,
      lyonEnv: { MESH_FAULT_DIR: switches },
    });
    assert.ok(topology.slurm, 'this test needs Slurm (run as root with slurm-wlm installed)');
    const { config } = topology;
    topology.startCoordinator();
    assert.ok(await topology.waitForDesign());
    topology.startModaneAgent();
    // Fewer than docs_per_job (10): one batch job holds them all, as with more files.
    const files = 3;
    const storage = config.sites.modane.storage as string;
    await mkdir(storage, { recursive: true });
    await writeSampleFiles(storage, files);
    await ingestDirectory(storage, {
      db: topology.open('modane'),
      docType: config.doc_type,
      ingest: config.ingest,
      stepNames: config.steps.map((s) => s.name),
      site: 'modane',
    });
    const kit = topology.open('kit');
    const all = async () =>
      (await kit.allDocs<DaqDocument>({ include_docs: true, startkey: 'run_', endkey: 'run_\ufff0' })).rows.map((r) => r.doc as DaqDocument);
    // Every document claimed for proc1 by a job (queued or in progress), none done yet.
    await waitFor(
      'every document claimed for proc1',
      async () => {
        const docs = await all();
        return docs.length === files && docs.every((d) => d.status === 'proc1 queued' || d.status === 'proc1 in progress');
      },
      120_000,
      200,
    );
    // Whatever woke lyon so far has run by now (trigger interval 2 s): from here on, nothing is ready.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const slurm = topology.slurm as NonNullable<Topology['slurm']>;
    const ids = (await slurm.squeue())
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((id) => /^\d+$/.test(id));
    assert.ok(ids.length > 0, 'lyon jobs are queued or running');
    await rm(join(switches, 'convert.hang'));
    await run('/usr/bin/scancel', ids, { env: { ...process.env, ...slurm.env } });
    await waitFor('every document complete on kit', async () => (await all()).every((d) => isComplete(d, config)), 180_000, 1000);
    const docs = await all();
    assert.ok(
      docs.some((d) => stepRecord(d, 'proc1')?.reason === undefined && (d.history ?? []).some((h) => /cancelled/.test(h.note ?? ''))),
      'a document went through "batch job … was cancelled"',
    );
  });
});
