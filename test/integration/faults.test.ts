import assert from 'node:assert/strict';
import { createLogger } from '../../core/log.js';
import { reportTable, runHarness } from '../faults/harness.js';
import { FAULT_KINDS } from '../faults/schedule.js';

/**
 * The short form of `npm run test:faults`: two rounds, every fault kind once (the deck deals
 * each kind before repeating one), on the full topology (sshd, Slurm, NATS — the suite runs as
 * root). MESH_FAULT_SEED replays another schedule. Four documents a round (one arriving per
 * fault slot) and holds of 2–4 s keep it cheap: each fault still lasts at least a heartbeat
 * and a sweep, and the second round still checks what the first left ok.
 */
describe('fault injection: the two-site topology keeps its promises under kills, restarts, partitions and broken steps', function () {
  this.timeout(420_000);

  it('every document final on every server, no double run, nothing lost, every output file checksummed', async () => {
    const seed = Number(process.env.MESH_FAULT_SEED ?? 20261127);
    const lines: string[] = [];
    const report = await runHarness({
      seed,
      rounds: 2,
      filesPerRound: 4,
      faultsPerRound: FAULT_KINDS.length / 2,
      maxHoldMs: 4000,
      settleMs: 200_000,
      stepSleepMs: 1000,
      ssh: true,
      slurm: true,
      nats: true,
      logger: createLogger({ level: 'warn' }),
      say: (line) => lines.push(line),
    });
    const table = reportTable(report);
    assert.equal(report.violations.length, 0, `${table}\n${lines.join('\n')}`);
    assert.equal(report.rounds, 2);
    assert.equal(report.documents, 8);
    const injected = Object.values(report.faults).reduce((a, b) => a + b, 0);
    assert.ok(injected >= FAULT_KINDS.length - 2, `only ${injected} faults hit something:\n${table}\n${lines.join('\n')}`);
    for (const kind of ['kill-agent', 'kill-coordinator', 'restart-server', 'stop-replication', 'restart-nats', 'step-fail', 'step-hang'] as const) {
      assert.equal(report.faults[kind], 1, `${kind} was not injected:\n${table}\n${lines.join('\n')}`);
    }
    // Each document ran proc1 and proc2 at least once (proc0 is the SFTP transfer: no program).
    assert.ok(report.runs >= 2 * report.documents, `${report.runs} step runs for ${report.documents} documents`);
  });
});
