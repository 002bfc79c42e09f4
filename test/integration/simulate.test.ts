import assert from 'node:assert/strict';
import { runMesh } from '../support/server-process.js';

describe('mesh simulate: the reference topology on one machine', function () {
  this.timeout(300_000);

  for (const variant of [['--no-ssh', '--no-slurm'], ['--nats']]) {
    const full = variant.includes('--nats');
    it(`runs every file through modane and lyon, identical on both servers ${full ? '(SFTP, SSH-triggered lyon runs, Slurm jobs, NATS)' : '(local copy, local lyon runs)'}`, async () => {
      const r = await runMesh(['simulate', '--files', '12', '--json', ...variant], {}, 280_000);
      assert.equal(r.status, 0, r.stderr.slice(-3000));
      const status = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
      assert.deepEqual(status.databases.map((d: { site: string }) => d.site), ['modane', 'kit']);
      for (const db of status.databases) {
        assert.equal(db.by_status.good, 12, `${db.site}: ${JSON.stringify(db.by_status)}`);
        for (const step of ['proc0', 'proc1', 'proc2']) assert.equal(db.steps[step].done, 12);
        assert.equal(db.conflicts, 0);
      }
      assert.deepEqual(status.replication.map((r: { from: string; to: string; on: string }) => `${r.from}>${r.to}@${r.on}`).sort(), ['kit>modane@modane', 'modane>kit@modane']);
      if (full) {
        assert.match(r.stderr, /sshd up/);
        assert.match(r.stderr, /Slurm up/);
        assert.match(r.stderr, /nats-server up/);
      }
      assert.ok(status.agents.some((a: { site: string }) => a.site === 'lyon'), 'a lyon agent ran');
    });
  }
});
