/**
 * The agent's logic in process, in seconds: real Agent objects against a real embedded server
 * over HTTP, with a step the test controls instead of a child process (the child-process path
 * is in agent.test.ts and one-run.test.ts). What is checked is the invariant itself: every
 * (doc, step) runs once, no two runs of one overlap, and a page of documents the agent cannot
 * use is not fetched again in a loop.
 */
import type { ViewContract } from '../../couchapp/mesh-views.js';
import { embeddedServersForSuite } from '../support/in-process.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Agent } from '../../agents/agent.js';
import type { AgentContext, ClaimedStepRunner } from '../../agents/context.js';
import { apply } from '../../agents/writes.js';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig } from '../../config/types.js';
import type { DaqDocument } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { historyTo } from '../../core/provenance.js';
import { Database } from '../../store/database.js';
import { pushDesigns } from '../../store/designs.js';
import * as files from '../../store/files.js';
import { waitFor } from '../support/mesh.js';

/** The real database, counting the view queries made through it (to see a sweep loop). */
class CountingDatabase extends Database {
  readonly queries = new Map<string, number>();

  override rows<K, V, D = unknown>(contract: ViewContract<K, V>, qs: Record<string, unknown> = {}) {
    this.queries.set(contract.name, (this.queries.get(contract.name) ?? 0) + 1);
    return super.rows<K, V, D>(contract, qs);
  }
}

interface Run {
  doc: string;
  step: string;
  agent: string;
  start: number;
  end: number;
}

describe('agent in process: real agents and server, a step the test controls', function () {
  const suite = embeddedServersForSuite('mesh-agent-inproc-', ['alpha']);
  let n = 0;

  function meshConfig(database: string, sweepS: number): MeshConfig {
    return parseMeshConfig(
      {
        database,
        doc_type: 'daqdocument',
        sites: { alpha: { server: suite.server('alpha').url, reachable: true, long_running: true, log_dir: join(suite.dir, 'logs') } },
        ingest: { site: 'alpha', quiet_s: 1 },
        steps: ['proc0', 'proc1'].map((name) => ({
          name,
          site: 'alpha',
          run: ['/bin/true', '{file}'],
          out: join(suite.dir, 'out', name, '{run_name}_{file_number}'),
          max_attempts: 3,
          lease_s: 60,
        })),
        agent: { sweep_s: sweepS, heartbeat_s: 5, retry_base_s: 1, retry_cap_s: 10, grace_s: 5 },
      },
      join(suite.dir, `${database}.json`),
    );
  }

  function closedDoc(i: number, extra: Record<string, unknown> = {}): DaqDocument {
    return {
      _id: `run_lg23b002_${String(i).padStart(4, '0')}`,
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: i,
      file: `/data/lg23b002_${i}`,
      size_in_bytes: 1,
      date_closed: '2026-11-27T10:00:00.000Z',
      status: 'closed',
      history: historyTo('closed', []),
      ...extra,
    } as DaqDocument;
  }

  function context(config: MeshConfig, db: Database, name: string, runStep: ClaimedStepRunner): AgentContext {
    return { config, site: config.sites.alpha, name, host: 'test-host', db, logger: silentLogger(), steps: config.steps, now: () => new Date(), runStep };
  }

  it('two agents racing on 300 documents and 2 steps run every (doc, step) once, never two runs of one at a time', async () => {
    const database = `race_${n++}`;
    const config = meshConfig(database, 1);
    const db = new Database({ url: suite.server('alpha').url, database, batchWrites: true });
    await db.ensure();
    await pushDesigns(db, config);
    for (let i = 0; i < 300; i += 100) await db.bulk(Array.from({ length: 100 }, (_, k) => closedDoc(i + k)));
    const runs: Run[] = [];
    const running = new Set<string>();
    let overlaps = 0;
    // The step: a few milliseconds of "work", then the success write, as step-job.ts records it.
    const step =
      (agent: string): ClaimedStepRunner =>
      async (ctx, claimed, stepName) => {
        const key = `${claimed._id}/${stepName}`;
        if (running.has(key)) overlaps++;
        running.add(key);
        const start = performance.now();
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
        running.delete(key);
        runs.push({ doc: claimed._id, step: stepName, agent, start, end: performance.now() });
        const doc = await apply(ctx, claimed, { type: 'succeed', step: stepName, agent: ctx.name, result: { exit_code: 0, duration_s: 0.001 } });
        return { end: 'succeeded', doc };
      };
    const agents = ['a1', 'a2'].map((name) => new Agent(context(config, db, name, step(name)), { concurrency: 4, once: false }));
    const finished = agents.map((a) => a.run());
    try {
      await waitFor('every step done', async () => [...(await files.countDone(db)).values()].join() === '300,300' || undefined, 120_000, 200);
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await Promise.all(finished);
    }
    const byKey = new Map<string, Run[]>();
    for (const run of runs) byKey.set(`${run.doc}/${run.step}`, [...(byKey.get(`${run.doc}/${run.step}`) ?? []), run]);
    assert.equal(byKey.size, 600, 'every (doc, step) ran');
    assert.deepEqual(
      [...byKey].filter(([, r]) => r.length > 1).map(([k]) => k),
      [],
      'none ran twice',
    );
    assert.equal(overlaps, 0, 'no two runs of one (doc, step) at the same time');
    assert.equal(agents[0].counters.claimed + agents[1].counters.claimed, 600, 'each claim won once');
    assert.ok(agents[0].counters.claimed > 0 && agents[1].counters.claimed > 0, 'both agents took part');
    const counts = await files.countByStatus(db);
    assert.deepEqual(Object.fromEntries(counts), { good: 300 });
  });

  it('a full page of documents it must skip is not swept again in a loop, and none of them runs', async () => {
    const database = `skipped_${n++}`;
    const config = meshConfig(database, 60);
    const db = new CountingDatabase({ url: suite.server('alpha').url, database });
    await db.ensure();
    // A top-level proc0 that is not a success breaks the layout (core/invariants.ts): the agent
    // skips such a document. Written before the validator is installed, which would refuse it.
    await db.bulk(Array.from({ length: 150 }, (_, i) => closedDoc(i, { proc0: { attempts: 1, ok: false } })));
    await pushDesigns(db, config);
    assert.ok((await files.readyCount(db, 'proc0', new Date().toISOString())) >= 150, 'the ready view lists them: a full page');
    let ran = 0;
    const agent = new Agent(
      context(config, db, 'skipper', async () => {
        ran++;
        throw new Error('no step may run');
      }),
      { concurrency: 1, once: false },
    );
    const finished = agent.run();
    try {
      await waitFor('the first page judged', () => (agent.counters.skipped >= 100 ? true : undefined), 30_000, 50);
      db.queries.clear();
      await new Promise((resolve) => setTimeout(resolve, 1500));
    } finally {
      await agent.stop();
      await finished;
    }
    assert.equal(ran, 0, 'nothing ran');
    assert.ok((db.queries.get('ready') ?? 0) <= 1, `ready view queried ${db.queries.get('ready')} times in 1.5 s after the page was judged (a sweep loop)`);
  });
});
