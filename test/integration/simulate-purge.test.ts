/**
 * `mesh simulate --purge` as a process: proc0's copies at lyon are verified by lyon's runs, their
 * records replicate to modane's server, and the purge at modane deletes every sample file and
 * prints its summary (the local stand-ins: no sshd, no Slurm, to keep it short).
 */
import assert from 'node:assert/strict';
import { runMesh } from '../support/server-process.js';

describe('mesh simulate --purge', function () {
  this.timeout(200_000);

  it('ends with a purge at modane that deletes every file, each with lyon’s verified copy', async () => {
    const r = await runMesh(['simulate', '--files', '4', '--purge', '--no-ssh', '--no-slurm', '--no-dashboard'], {}, 180_000);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    assert.match(r.stdout, /^purge at modane\n {2}rule: 1 agreeing copy at distinct sites other than modane, closed before /m);
    assert.match(r.stdout, /deleted 4 files, [\d.]+ kB freed\n {2}held back: none\n/);
  });
});
