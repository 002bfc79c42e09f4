/**
 * A failure the configuration caused never takes documents out of the pipeline: the step goes
 * straight to `<step> failed` (one attempt, reason "configuration: …", never `bad`), and once
 * the config is fixed `mesh retry` plus an agent run completes it. Real embedded server, real
 * `mesh` processes (and, for a template the loader now refuses, a real agent in process).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../agents/agent.js';
import type { AgentContext } from '../../agents/context.js';
import type { MeshConfig } from '../../config/types.js';
import { type DaqDocument, type StepRecord, stepRecord } from '../../core/document.js';
import { silentLogger } from '../../core/log.js';
import { type ServerProcess } from '../support/server-process.js';
import { type TestMesh, makeMesh, runMesh, seedDocuments, serverForSuite } from '../support/mesh.js';

type Json = Record<string, unknown>;

async function runsOf(mesh: TestMesh): Promise<string[]> {
  return (await readFile(mesh.runLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

async function docs(mesh: TestMesh, ids: readonly string[]): Promise<DaqDocument[]> {
  return Promise.all(ids.map(async (id) => (await mesh.db.get<DaqDocument>(id)) as DaqDocument));
}

/** Every document is `proc0 failed` after one attempt, for a configuration reason, and was never bad. */
function assertFailedByConfig(all: DaqDocument[], reason: RegExp): void {
  for (const doc of all) {
    const record = stepRecord(doc, 'proc0') as StepRecord;
    assert.equal(doc.status, 'proc0 failed', `${doc._id}: ${JSON.stringify(doc.history.at(-1))}`);
    assert.equal(record.attempts, 1, `${doc._id}: no retries burned (max_attempts is 3)`);
    assert.match(String(record.reason), /^configuration: /);
    assert.match(String(record.reason), reason);
    assert.ok(!doc.history.some((h) => h.to === 'bad'), `${doc._id} was never marked bad`);
  }
}

/** Fixes the config, retries every document through `mesh retry`, runs an agent: all complete, each run once. */
async function retryAndComplete(mesh: TestMesh, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const retried = await runMesh(['--config', mesh.configFile, 'retry', id, '--step', 'proc0']);
    assert.equal(retried.status, 0, retried.stderr);
  }
  const again = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--once'], {}, 60_000);
  assert.equal(again.status, 0, again.stderr);
  for (const doc of await docs(mesh, ids)) {
    assert.equal(doc.status, 'good', doc._id);
    assert.equal((stepRecord(doc, 'proc0') as StepRecord).ok, true, doc._id);
  }
  assert.deepEqual((await runsOf(mesh)).sort(), ids.map((id) => `${id} proc0`).sort(), 'each document ran once, after the fix');
}

describe('configuration faults at run time (a typo must not take the backlog out of the pipeline)', function () {
  this.timeout(180_000);
  let server: ServerProcess;
  serverForSuite((s) => (server = s));

  /** A one-step mesh whose config file gets `edit`, with three closed documents; returns the valid raw config. */
  async function brokenMesh(edit: (step: Json, mesh: TestMesh) => Promise<void> | void): Promise<{ mesh: TestMesh; ids: string[]; valid: string }> {
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const ids = await seedDocuments(mesh, 3);
    const valid = await readFile(mesh.configFile, 'utf8');
    const raw = JSON.parse(valid) as { steps: Json[] };
    await edit(raw.steps[0], mesh);
    await writeFile(mesh.configFile, JSON.stringify(raw));
    return { mesh, ids, valid };
  }

  it('a step program that does not exist: failed at once, then mesh retry after the fix completes it', async () => {
    const { mesh, ids, valid } = await brokenMesh((step, m) => void ((step.run as string[])[0] = join(m.dir, 'bin', 'no-such-program')));
    const first = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--once'], {}, 60_000);
    assert.equal(first.status, 0, first.stderr);
    assertFailedByConfig(await docs(mesh, ids), /program .*no-such-program.* is not an executable file/);
    assert.deepEqual(await runsOf(mesh), [], 'nothing ran');
    await writeFile(mesh.configFile, valid);
    await retryAndComplete(mesh, ids);
  });

  it('an output folder that cannot be made: failed at once, then mesh retry after the fix completes it', async () => {
    // `out` points under a regular file: no folder can be made there, for any document.
    const { mesh, ids, valid } = await brokenMesh(async (step, m) => {
      await writeFile(join(m.dir, 'not-a-folder'), '');
      step.out = join(m.dir, 'not-a-folder', '{run_name}_{file_number}');
    });
    const first = await runMesh(['--config', mesh.configFile, 'agent', '--site', 'alpha', '--once'], {}, 60_000);
    assert.equal(first.status, 0, first.stderr);
    assertFailedByConfig(await docs(mesh, ids), /cannot create the output folder .*not-a-folder/);
    await writeFile(mesh.configFile, valid);
    await retryAndComplete(mesh, ids);
  });

  it('a template the loader refuses, reaching an agent through the API: failed, never bad, then retried', async () => {
    // The loader now refuses a relative `out` (it used to mark every ready document bad at run
    // time); a config built in code bypasses the loader, so the agent still tells whose fault it is.
    const mesh = await makeMesh(server.url, { steps: ['proc0'] });
    const ids = await seedDocuments(mesh, 3);
    const config: MeshConfig = { ...mesh.config, steps: mesh.config.steps.map((s) => ({ ...s, out: 'rel/{run_name}_{file_number}' })) };
    const site = config.sites.alpha;
    const ctx: AgentContext = {
      config,
      site,
      name: 'api-agent',
      host: hostname(),
      db: mesh.db,
      logger: silentLogger(),
      steps: config.steps,
      now: () => new Date(),
    };
    await new Agent(ctx, { concurrency: 2, once: true }).run();
    assertFailedByConfig(await docs(mesh, ids), /step proc0: out "rel\/\{run_name\}_\{file_number\}": the path is not an absolute path/);
    assert.deepEqual(await runsOf(mesh), [], 'nothing ran');
    // The config on disk (written by makeMesh) is the fixed one.
    await retryAndComplete(mesh, ids);
  });
});
