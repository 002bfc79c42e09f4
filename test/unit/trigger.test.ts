/**
 * The trigger's timing (agents/trigger.ts) with the real RemoteTrigger and runs the test ends
 * itself: a poke that finds it idle starts a run at once (no settle delay on the path of every
 * document); pokes are coalesced only while a run is in flight or due. The SSH path of the same
 * trigger is tested against a real sshd in test/integration/sftp.test.ts.
 */
import assert from 'node:assert/strict';
import { RemoteTrigger, type TriggerTarget } from '../../agents/trigger.js';
import { parseMeshConfig } from '../../config/load.js';
import { silentLogger } from '../../core/log.js';
import { waitFor } from '../support/mesh.js';

const config = parseMeshConfig(
  {
    database: 'trigger_unit',
    doc_type: 'daqdocument',
    sites: {
      modane: { server: 'http://127.0.0.1:1', reachable: false, long_running: true },
      lyon: { server: 'http://127.0.0.1:1', reachable: true, long_running: false },
    },
    ingest: { site: 'modane', pattern: '^(?<run_name>[a-z]+)_(?<file_number>\\d+)$', quiet_s: 1 },
    steps: [{ name: 'proc1', site: 'lyon', run: ['/bin/true'], out: '/tmp/never/{run_name}_{file_number}' }],
  },
  '/nonexistent/mesh.json',
);
const target: TriggerTarget = { site: config.sites.lyon, steps: ['proc1'] };

/** Runs that start when the trigger calls the runner and end when the test says. */
class Runs {
  readonly started: number[] = [];
  readonly signals: AbortSignal[] = [];
  private readonly ends: Array<(code: number | null) => void> = [];
  readonly runner = (signal: AbortSignal): Promise<number | null> => {
    this.started.push(Date.now());
    this.signals.push(signal);
    return new Promise((resolve) => {
      this.ends.push(resolve);
      signal.addEventListener('abort', () => resolve(null), { once: true });
    });
  };
  end(index: number, code: number | null = 0): void {
    this.ends[index](code);
  }
}

describe('trigger timing: at once when idle, coalesced while a run is in flight or due (real RemoteTrigger, runs the test ends)', function () {
  this.timeout(20_000);
  const made: RemoteTrigger[] = [];
  const trigger = (intervalMs: number, runs: Runs) => {
    const t = new RemoteTrigger({ target, logger: silentLogger(), intervalMs, runner: runs.runner });
    made.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(made.splice(0).map((t) => t.stop()));
  });

  it('a poke that finds the trigger idle starts the run within poke() itself', async () => {
    const runs = new Runs();
    const t = trigger(60_000, runs);
    assert.equal(t.state, 'idle');
    t.poke();
    assert.equal(runs.started.length, 1, 'the run started before poke() returned: no settle delay');
    assert.equal(t.state, 'running');
    runs.end(0);
    await t.whenIdle();
    assert.equal(t.state, 'idle');
    assert.deepEqual(t.counters, { runs: 1, failures: 0, pokes: 1 });
    assert.equal(t.lastExit, 0);
  });

  it('pokes during a run make exactly one more run, started the interval after the first', async () => {
    const intervalMs = 300;
    const runs = new Runs();
    const t = trigger(intervalMs, runs);
    t.poke();
    for (let i = 0; i < 5; i++) t.poke();
    assert.equal(runs.started.length, 1, 'one run at a time');
    runs.end(0, 3);
    await waitFor('the run due after the first', () => runs.started.length === 2, 5000, 5);
    // Each start is noted by the runner, a millisecond or so after the trigger's own.
    assert.ok(runs.started[1] - runs.started[0] >= intervalMs - 2, `runs ${runs.started[1] - runs.started[0]} ms apart, the interval is ${intervalMs} ms`);
    runs.end(1);
    await t.whenIdle();
    assert.equal(runs.started.length, 2, 'six pokes, two runs');
    assert.deepEqual(t.counters, { runs: 2, failures: 1, pokes: 6 }, 'the first run exited 3: a failure');
  });

  it('a poke while a run is due (the interval not over) waits for its turn, with the pokes after it', async () => {
    const intervalMs = 400;
    const runs = new Runs();
    const t = trigger(intervalMs, runs);
    t.poke();
    runs.end(0);
    await t.whenIdle();
    // Idle, but the last run started less than the interval ago: the next one is due, not run.
    t.poke();
    assert.equal(t.state, 'waiting');
    t.poke();
    assert.equal(runs.started.length, 1);
    await waitFor('the due run', () => runs.started.length === 2, 5000, 5);
    assert.ok(runs.started[1] - runs.started[0] >= intervalMs - 2, `${runs.started[1] - runs.started[0]} ms apart`);
    runs.end(1);
    await t.whenIdle();
    assert.equal(t.counters.runs, 2);
  });

  it('stop() ends a run in flight through its signal and a due run never starts; later pokes do nothing', async () => {
    const runs = new Runs();
    const t = trigger(60_000, runs);
    t.poke();
    t.poke();
    const stopped = t.stop();
    assert.equal(runs.signals[0].aborted, true);
    await stopped;
    assert.equal(t.state, 'stopped');
    t.poke();
    assert.equal(runs.started.length, 1);
    assert.equal(t.lastExit, null);
    assert.equal(await t.stop(), undefined, 'stop() is idempotent');
  });
});
