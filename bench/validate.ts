/**
 * Bench section "validate": what the server's write rules cost. The same `_bulk_docs` updates
 * (claims, then successes, as the agents write them) go into three databases of one embedded
 * server: one without validate_doc_update (the baseline), one with the previous function
 * (bench/fixtures/validate-v4.json: generator version 4, issue 10; the functions before it judge
 * another document layout and refuse these updates), one with the current generated function.
 * The runs alternate so that the machine's load falls on all three alike.
 */
import { openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerChild } from '../cli/processes.js';
import { parseMeshConfig } from '../config/load.js';
import type { MeshConfig } from '../config/types.js';
import { Database } from '../store/database.js';
import type { DaqDocument } from '../core/document.js';
import { historyTo } from '../core/provenance.js';
import { type MeshEvent, transition } from '../core/state.js';
import { designDocument } from '../couchapp/design.js';
import { pushDesign } from '../store/designs.js';
import { type BenchSection, progress, ratio } from './report.js';

const BATCH = 500;
const STEPS = ['proc0', 'proc1', 'proc2'];

function benchConfig(url: string, work: string) {
  return parseMeshConfig(
    {
      database: 'validate',
      doc_type: 'daqdocument',
      sites: { bench: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs'), may_run: STEPS } },
      ingest: { site: 'bench', quiet_s: 1 },
      steps: STEPS.map((name) => ({
        name,
        site: 'bench',
        run: ['/bin/true'],
        out: join(work, 'out', name, '{run_name}_{file_number}'),
        timeout_s: 60,
        max_attempts: 3,
        lease_s: 60,
      })),
    },
    join(work, 'validate.json'),
  );
}

type Variant = 'none' | 'previous' | 'current';

async function previousFunction(): Promise<string> {
  const fixture = JSON.parse(await readFile(new URL('../../bench/fixtures/validate-v4.json', import.meta.url), 'utf8')) as { validate_doc_update: string };
  return fixture.validate_doc_update;
}

/** Writes `count` closed documents, then claims and completes proc0 on each; the updates' docs/s. */
export async function updateRate(db: Database, config: MeshConfig, count: number, prefix: string): Promise<number> {
  const lease = new Date(Date.now() + 3_600_000).toISOString();
  let docs: DaqDocument[] = Array.from({ length: count }, (_, i) => ({
    _id: `${prefix}_${String(i).padStart(6, '0')}`,
    type: 'daqdocument',
    run_name: 'lg23b002',
    file_number: i,
    file: `/data/${prefix}/${i}`,
    size_in_bytes: 0,
    date_closed: new Date().toISOString(),
    status: 'closed',
    history: historyTo('closed', [], new Date().toISOString(), 'bench/ingest', db.user),
  }));
  const write = async (batch: DaqDocument[]) => {
    const rows = await db.bulk(batch);
    const refused = rows.filter((r) => r.error);
    if (refused.length > 0) throw new Error(`${db.name}: ${refused.length} writes refused, e.g. ${refused[0].error}: ${refused[0].reason}`);
    // By id, not by position: the embedded server answers a member's _bulk_docs out of order.
    const revs = new Map(rows.map((r) => [r.id, r.rev]));
    return batch.map((d) => ({ ...d, _rev: revs.get(d._id) }));
  };
  const writeAll = async (all: DaqDocument[]) => {
    const written: DaqDocument[] = [];
    for (let i = 0; i < all.length; i += BATCH) written.push(...(await write(all.slice(i, i + BATCH))));
    return written;
  };
  docs = await writeAll(docs);
  const events: MeshEvent[] = [
    { type: 'claim', step: 'proc0', mode: 'run', site: 'bench', agent: 'b1', host: 'h', lease_until: lease },
    { type: 'succeed', step: 'proc0', agent: 'b1', result: { exit_code: 0, duration_s: 1 } },
  ];
  const started = performance.now();
  for (const event of events) {
    docs = await writeAll(
      docs.map((d) => {
        // As the agents write: the history entry names the account writing (the server checks it).
        const result = transition(d, { ...event, user: db.user }, new Date(), config);
        if (!result.ok) throw result.error;
        return result.doc;
      }),
    );
  }
  return (docs.length * events.length) / ((performance.now() - started) / 1000);
}

export async function runValidate(options: { quick: boolean }): Promise<BenchSection> {
  const count = options.quick ? 200 : 4000;
  const work = await mkdtemp(join(tmpdir(), 'mesh-bench-validate-'));
  const server = await startServerChild('bench', join(work, 'couch'), { logFile: openSync(join(work, 'server.log'), 'a') });
  try {
    const config = benchConfig(server.url, work);
    const dbs = {} as Record<Variant, Database>;
    for (const variant of ['none', 'previous', 'current'] as const) {
      dbs[variant] = new Database({ url: server.url, database: `validate_${variant}` });
      await dbs[variant].ensure();
    }
    await dbs.previous.put({ _id: '_design/previous', validate_doc_update: await previousFunction() });
    await pushDesign(dbs.current, designDocument(config));
    const best: Record<Variant, number> = { none: 0, previous: 0, current: 0 };
    const rounds = options.quick ? 1 : 3;
    for (let round = 1; round <= rounds; round++) {
      for (const variant of ['none', 'previous', 'current'] as const) {
        progress(
          'validate',
          `round ${round}/${rounds}: ${count} claims and ${count} successes, ${variant === 'none' ? 'no validate_doc_update' : `the ${variant} function`}`,
        );
        best[variant] = Math.max(best[variant], await updateRate(dbs[variant], config, count, `r${round}`));
      }
    }
    const rate = (n: number) => `${n.toFixed(0)} docs/s`;
    return {
      title: 'validate: _bulk_docs updates through the generated validate_doc_update on one embedded server',
      command: `node dist/bench/main.js --only validate${options.quick ? ' --quick' : ''}`,
      rows: [
        { measure: 'updates with no validate_doc_update', value: rate(best.none) },
        {
          measure: 'updates through the previous function (generator 4, issue 10)',
          value: rate(best.previous),
          baseline: rate(best.none),
          ratio: ratio(best.previous, best.none),
        },
        {
          measure: 'updates through the current function (roles, provenance, history chain)',
          value: rate(best.current),
          baseline: rate(best.none),
          ratio: ratio(best.current, best.none),
        },
        { measure: 'current against previous', value: rate(best.current), baseline: rate(best.previous), ratio: ratio(best.current, best.previous) },
      ],
      notes: [
        `best of ${rounds} alternating rounds of ${count} claims then ${count} successes (batches of ${BATCH}); the writer is the admin party, which the function checks for everything but authorship`,
      ],
    };
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
