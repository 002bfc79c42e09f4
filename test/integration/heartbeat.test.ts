/**
 * The heartbeat's cadence (agents/heartbeat.ts): every heartbeat write is a validated write on
 * the server, so an idle agent writes only as often as the silence threshold needs, and a busy
 * one when what its document says changed, at most once per `heartbeat_s`. Real embedded
 * server, the heartbeat in process with short periods so that the test takes seconds.
 */
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { type AgentHeartbeat, Heartbeat, heartbeatId, keepAliveSeconds } from '../../agents/heartbeat.js';
import type { AgentContext } from '../../agents/context.js';
import type { MeshConfig } from '../../config/types.js';
import { silentFor } from '../../coordinator/alerts.js';
import { silentLogger } from '../../core/log.js';
import { type ServerProcess } from '../support/server-process.js';
import { makeMesh, serverForSuite } from '../support/mesh.js';

const HEARTBEAT_S = 0.2;
const SILENT_S = 1.5;

function revNumber(doc: { _rev?: string } | undefined): number {
  return Number.parseInt(doc?._rev ?? '0', 10);
}

describe('heartbeat cadence: written on change, else as often as the silence threshold needs (real server)', function () {
  this.timeout(60_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  it('the keep-alive period is a third of alerts.agent_silent_s, never under agent.heartbeat_s', () => {
    assert.equal(keepAliveSeconds({ agent: { heartbeat_s: 10 }, alerts: { agent_silent_s: 120 } } as MeshConfig), 40);
    assert.equal(keepAliveSeconds({ agent: { heartbeat_s: 10 }, alerts: { agent_silent_s: 15 } } as MeshConfig), 10);
  });

  it('an idle agent writes every third of the silence threshold and never looks silent; a change is written within one heartbeat_s', async () => {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const config: MeshConfig = {
      ...mesh.config,
      agent: { ...mesh.config.agent, heartbeat_s: HEARTBEAT_S },
      alerts: { ...mesh.config.alerts, agent_silent_s: SILENT_S },
    };
    const ctx: AgentContext = {
      config,
      site: config.sites.alpha,
      name: 'beater',
      host: hostname(),
      db: mesh.db,
      logger: silentLogger(),
      steps: config.steps,
      now: () => new Date(),
    };
    let running: Array<{ doc: string; step: string }> = [];
    const heartbeat = new Heartbeat(ctx, () => running);
    const id = heartbeatId('alpha', 'beater');
    heartbeat.start();
    const idleMs = 3000;
    const started = Date.now();
    let oldest = 0;
    // Bounded: one read every 50 ms for idleMs.
    while (Date.now() - started < idleMs) {
      const doc = await mesh.db.get<AgentHeartbeat>(id);
      if (doc) {
        oldest = Math.max(oldest, Date.now() - Date.parse(doc.last_seen));
        assert.equal(silentFor(doc, config, new Date()), undefined, `a live idle agent looked silent (last seen ${doc.last_seen})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const idleWrites = revNumber(await mesh.db.get<AgentHeartbeat>(id));
    // Once at start, then every 0.5 s (keep-alive) instead of every 0.2 s: about 7 against 16.
    assert.ok(
      idleWrites >= 3 && idleWrites <= 9,
      `${idleWrites} heartbeat writes in ${idleMs} ms idle (keep-alive ${keepAliveSeconds(config)} s, heartbeat_s ${HEARTBEAT_S})`,
    );
    assert.ok(oldest < (keepAliveSeconds(config) + HEARTBEAT_S) * 1000 + 500, `the heartbeat was ${oldest} ms old at worst`);

    // A change (a step started) is written at the next look, not at the next keep-alive.
    const before = revNumber(await mesh.db.get<AgentHeartbeat>(id));
    running = [{ doc: 'run_x', step: 'proc0' }];
    const changedAt = Date.now();
    let shown: AgentHeartbeat | undefined;
    while (Date.now() - changedAt < 5000 && !shown) {
      const doc = await mesh.db.get<AgentHeartbeat>(id);
      if (doc?.running.length === 1) shown = doc;
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(shown, 'the change was written');
    const tookMs = Date.now() - changedAt;
    assert.ok(tookMs < HEARTBEAT_S * 1000 + 400, `the change took ${tookMs} ms to be written (heartbeat_s ${HEARTBEAT_S})`);
    assert.ok(revNumber(shown) <= before + 2, 'one write for the change');
    await heartbeat.stop();
    const last = (await mesh.db.get<AgentHeartbeat>(id)) as AgentHeartbeat;
    assert.equal(last.state, 'stopped', 'the last heartbeat is always written');
    assert.equal(heartbeat.writes, revNumber(last), 'every write a compare-and-set on the revision the last one made (no conflict, no extra write)');
  });
});
