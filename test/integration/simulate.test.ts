import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runMesh } from '../support/server-process.js';
import { testFolder } from '../support/folders.js';

describe('mesh simulate: the reference topology on one machine, push-only modane', function () {
  this.timeout(300_000);

  for (const variant of [['--no-ssh', '--no-slurm', '--arrival-ms', '400'], ['--nats']]) {
    const full = variant.includes('--nats');
    it(`runs every file through modane and lyon, identical on both servers ${full ? '(SFTP, SSH-triggered lyon runs, Slurm jobs, NATS)' : '(local copy, local lyon runs, files arriving one at a time)'}`, async () => {
      const clients = join(testFolder('mesh-clients-'), 'modane-clients.jsonl');
      const r = await runMesh(['simulate', '--files', '12', '--json', '--record-clients', clients, ...variant], {}, 280_000);
      assert.equal(r.status, 0, r.stderr.slice(-3000));
      const status = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
      assert.deepEqual(
        status.databases.map((d: { site: string }) => d.site),
        ['modane', 'kit'],
      );
      for (const db of status.databases) {
        assert.equal(db.by_status.good, 12, `${db.site}: ${JSON.stringify(db.by_status)}`);
        for (const step of ['proc0', 'proc1', 'proc2']) assert.equal(db.steps[step].done, 12);
        assert.equal(db.conflicts, 0);
      }
      assert.deepEqual(status.replication.map((r: { from: string; to: string; on: string }) => `${r.from}>${r.to}@${r.on}`).sort(), [
        'kit>modane@modane',
        'modane>kit@modane',
      ]);
      if (!full) assert.match(r.stderr, /sample files close one at a time/);
      if (full) {
        assert.match(r.stderr, /sshd up/);
        assert.match(r.stderr, /Slurm up/);
        assert.match(r.stderr, /nats-server up/);
      }
      assert.ok(
        status.agents.some((a: { site: string }) => a.site === 'lyon'),
        'a lyon agent ran',
      );

      // Push-only: modane's server named the process behind every connection it accepted.
      // Only modane's own processes may appear: its server (its replication jobs), its agent,
      // the coordinator (it runs at modane) and the simulation itself (the operator at modane).
      // A connection that closed before sending a byte may stay unnamed: nothing crossed it.
      const records = (await readFile(clients, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { cmdline: string | null; pid: number | null; bytes_read: number });
      assert.ok(records.length > 10, `${records.length} connections recorded`);
      const allowed = [/ server --site modane /, / agent --site modane /, / coordinator /, / simulate /];
      for (const record of records) {
        if (!record.cmdline && record.bytes_read === 0) continue;
        assert.ok(record.cmdline, `a connection whose process could not be named: ${JSON.stringify(record)}`);
        assert.ok(
          allowed.some((a) => a.test(` ${record.cmdline} `)),
          `a process outside modane connected to modane's server: ${record.cmdline}`,
        );
      }
      assert.ok(
        records.some((rec) => / server --site modane /.test(` ${rec.cmdline} `)),
        "modane's replication jobs ran from modane's server",
      );
    });
  }
});
