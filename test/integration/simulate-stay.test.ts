/**
 * Issue 13 §5: `mesh simulate` gives up when nothing moves (here after 2 s, `--give-up-after`),
 * but with `--stay` or `--wait-on-failure` it stays, saying so once per window, until it is
 * interrupted (SIGINT, as Ctrl-C). Nothing moves because proc1 hangs (the fault switch); the
 * runs are local (`--no-ssh`), and then no "no sshd" line is logged.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testFolder } from '../support/folders.js';
import { waitFor } from '../support/mesh.js';
import { meshMain, repoRoot, runMesh } from '../support/server-process.js';

const WINDOW_S = 2;

function hangingEnv(): NodeJS.ProcessEnv {
  const tmp = testFolder('mesh-simstay-');
  const faults = join(tmp, 'faults');
  mkdirSync(faults);
  writeFileSync(join(faults, 'convert.hang'), '');
  return { TMPDIR: tmp, MESH_FAULT_DIR: faults, MESH_LOG_LEVEL: 'info' };
}

const args = ['simulate', '--files', '1', '--no-ssh', '--no-slurm', '--no-dashboard', '--give-up-after', String(WINDOW_S)];

describe('mesh simulate: --stay and --wait-on-failure stay until interrupted', function () {
  this.timeout(180_000);
  const children = new Set<ChildProcess>();

  afterEach(async () => {
    // SIGINT first: a simulation stops the servers and agents it started (a SIGKILL would leave them running).
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
    }
    children.clear();
  });

  it('without either flag it gives up when nothing moves for --give-up-after seconds', async () => {
    const r = await runMesh(args, hangingEnv(), 120_000);
    assert.equal(r.status, 1, r.stderr.slice(-2000));
    assert.match(r.stderr, /mesh: no progress for [2-9] s \(modane: proc0 /);
    assert.doesNotMatch(r.stderr, /no sshd/, 'with --no-ssh the simulation does not say why there is no sshd');
  });

  /** Starts the simulation with `flag`; resolves once it has stayed two windows without progress, then interrupts it. */
  async function staysUntilInterrupted(flag: string): Promise<void> {
    const child = spawn(process.execPath, [meshMain, ...args, flag], {
      cwd: repoRoot,
      env: { ...process.env, ...hangingEnv() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout?.resume();
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    const staying = new RegExp(`no progress for \\d+ s \\([^)]*\\); staying up \\(${flag}\\) until interrupted`, 'g');
    // Two windows without progress: the one that ends the run without the flag, and the next.
    await waitFor(
      `two "staying up (${flag})" lines`,
      () =>
        (stderr.match(staying)?.length ?? 0) >= 2 ? true : child.exitCode !== null ? Promise.reject(new Error(`exited:\n${stderr.slice(-2000)}`)) : undefined,
      90_000,
      100,
    );
    assert.equal(child.exitCode, null, `${flag}: still running after two windows without progress`);
    assert.doesNotMatch(stderr, /no sshd/);
    child.kill('SIGINT');
    const [status] = await exited;
    assert.equal(status, 1, stderr.slice(-2000));
    assert.match(stderr, /mesh: simulation interrupted/);
  }

  // The two simulations are independent (each its own folder, servers and ports): they run side by side.
  it('with --stay, and with --wait-on-failure, it stays window after window without progress, until SIGINT', async () => {
    await Promise.all(['--stay', '--wait-on-failure'].map(staysUntilInterrupted));
  });
});
