/**
 * The coordinator round in process, in seconds: coordinatorRound against two real embedded
 * servers over HTTP (the `mesh coordinator --once` process path is coordinator.test.ts).
 * Checked: the first round sets everything up where the topology says, the second writes
 * nothing but its markers, and what one server holds reaches the other.
 */
import { embeddedServersForSuite } from '../support/in-process.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseMeshConfig } from '../../config/load.js';
import type { MeshConfig, SiteConfig } from '../../config/types.js';
import { silentLogger } from '../../core/log.js';
import { historyTo } from '../../core/provenance.js';
import { ReplicationMonitor } from '../../coordinator/replication.js';
import { type CoordinatorContext, coordinatorRound } from '../../coordinator/round.js';
import { type EmbeddedServer } from '../../server/embedded.js';
import { ASSIGNMENT_ID } from '../../store/assignment.js';
import { Database } from '../../store/database.js';
import { waitFor } from '../support/mesh.js';

describe('coordinator round in process: two real servers, one push-only', function () {
  const suite = embeddedServersForSuite('mesh-round-inproc-', ['modane', 'kit']);
  let dir: string;
  let modane: EmbeddedServer;
  let kit: EmbeddedServer;
  let config: MeshConfig;
  let ctx: CoordinatorContext;

  before(async () => {
    [dir, modane, kit] = [suite.dir, suite.server('modane'), suite.server('kit')];
    config = parseMeshConfig(
      {
        database: 'edelweiss',
        doc_type: 'daqdocument',
        sites: {
          // Behind a VPN: nobody connects to modane, so modane holds both replication jobs.
          modane: { server: modane.url, reachable: false, long_running: true, log_dir: join(dir, 'logs', 'modane') },
          kit: { server: kit.url, reachable: true, long_running: true, log_dir: join(dir, 'logs', 'kit') },
        },
        ingest: { site: 'modane', quiet_s: 1 },
        steps: [
          { name: 'proc0', site: 'modane', run: ['/bin/true'], out: join(dir, 'out', '{run_name}_{file_number}') },
          { name: 'proc1', site: 'kit', run: ['/bin/true'], out: join(dir, 'out1', '{run_name}_{file_number}') },
        ],
        coordinator: { site: 'modane', interval_s: 1 },
      },
      join(dir, 'mesh.json'),
    );
    const open = (site: SiteConfig, database?: string) => new Database({ url: site.server, database: database ?? config.database });
    ctx = { config, open, logger: silentLogger(), by: 'coordinator/modane' };
  });

  it('round 1 sets up designs, both jobs on modane, markers and the assignment; round 2 writes only markers; documents cross both ways', async () => {
    const monitor = new ReplicationMonitor({ intervalMs: 1000 });
    const first = await coordinatorRound(ctx, monitor, 1);
    assert.deepEqual(
      first.servers.map((s) => [s.site, s.reachable, s.design]),
      [
        ['modane', true, 'updated'],
        ['kit', true, 'updated'],
      ],
    );
    assert.deepEqual(first.replications.map((r) => [r.from, r.to, r.on, r.action]).sort(), [
      ['kit', 'modane', 'modane', 'created'],
      ['modane', 'kit', 'modane', 'created'],
    ]);
    assert.deepEqual(
      first.markers.map((m) => [m.site, m.result, m.n]),
      [
        ['modane', 'written', 1],
        ['kit', 'written', 1],
      ],
    );
    assert.equal(first.assignment, 'written');
    const kitReplicator = new Database({ url: kit.url, database: '_replicator' });
    await kitReplicator.ensure();
    assert.equal(
      (await kitReplicator.allDocs({})).rows.filter((r) => !String(r.id).startsWith('_design/')).length,
      0,
      'nothing connects to modane: kit holds no job',
    );

    const second = await coordinatorRound(ctx, monitor, 2);
    assert.deepEqual(
      second.servers.map((s) => s.design),
      ['unchanged', 'unchanged'],
    );
    assert.deepEqual(
      second.replications.map((r) => r.action),
      ['none', 'none'],
    );
    assert.equal(second.assignment, 'unchanged');
    assert.deepEqual(
      second.markers.map((m) => m.n),
      [2, 2],
    );

    const onModane = new Database({ url: modane.url, database: config.database });
    const onKit = new Database({ url: kit.url, database: config.database });
    await waitFor('the assignment on kit', () => onKit.get(ASSIGNMENT_ID), 30_000, 100);
    const doc = {
      _id: 'run_lg23b002_000',
      type: 'daqdocument',
      run_name: 'lg23b002',
      file_number: 0,
      file: '/data/x',
      size_in_bytes: 1,
      date_closed: '2026-11-27T10:00:00.000Z',
      status: 'closed',
      history: historyTo('closed', []),
    };
    await onModane.put(doc);
    await waitFor('modane → kit', () => onKit.get('run_lg23b002_000'), 30_000, 100);
    await onKit.put({ ...doc, _id: 'run_lg23b002_001', file_number: 1 });
    await waitFor('kit → modane', () => onModane.get('run_lg23b002_001'), 30_000, 100);
  });
});
