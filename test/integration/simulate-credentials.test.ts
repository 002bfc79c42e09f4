/**
 * Issue 13 / issue 9 item 2: `mesh simulate` with server credentials, lyon reached over SSH.
 * Lyon's processes get kit's credentials as a user and a 0600 password file (the remote command
 * line carries the file's path, never the password), and every file goes through both sites;
 * the fault switch of the example steps reaches lyon's steps too.
 */
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testFolder } from '../support/folders.js';
import { runMesh } from '../support/server-process.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) return [];
    return stat.isDirectory() ? filesUnder(path) : stat.isFile() ? [path] : [];
  });
}

describe('mesh simulate with server credentials (lyon over SSH)', function () {
  this.timeout(300_000);

  it("gives each agent an account of its own, forwards lyon's to it as a password file, and every file completes on both servers", async function () {
    const tmp = testFolder('mesh-simcred-');
    const modanePassword = 'sim-modane-Pw-71q';
    const kitPassword = 'sim-kit-Pw-38z';
    const modaneFile = join(tmp, 'modane.pw');
    writeFileSync(modaneFile, `${modanePassword}\n`, { mode: 0o600 });
    const env = { TMPDIR: tmp, MESH_MODANE_USER: 'simadmin', MESH_MODANE_PASSWORD_FILE: modaneFile, MESH_KIT_USER: 'simadmin', MESH_KIT_PASSWORD: kitPassword };
    const r = await runMesh(['simulate', '--files', '6', '--json', '--keep', '--no-dashboard'], env, 280_000);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const status = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as {
      databases: Array<{ site: string; by_status: Record<string, number> }>;
      agents: Array<{ site: string }>;
    };
    for (const db of status.databases) assert.equal(db.by_status.good, 6, `${db.site}: ${JSON.stringify(db.by_status)}`);
    assert.ok(
      status.agents.some((a) => a.site === 'lyon'),
      "a lyon agent ran (it could log in on kit's server)",
    );
    assert.ok(!r.stdout.includes(kitPassword) && !r.stderr.includes(kitPassword) && !r.stderr.includes(modanePassword));

    const work = readdirSync(tmp).find((name) => name.startsWith('mesh-simulate-'));
    assert.ok(work, 'the kept simulation folder');
    const config = readFileSync(join(tmp, work, 'mesh.json'), 'utf8');
    // Lyon's processes log in with lyon's agent account, not the admin's.
    assert.match(config, /MESH_KIT_USER=sim-lyon-agent/);
    assert.doesNotMatch(config, /MESH_KIT_USER=simadmin/);
    for (const name of ['sim-modane-agent', 'sim-lyon-agent', 'sim-operator'])
      assert.equal(statSync(join(tmp, work, 'secrets', `${name}.password`)).mode & 0o777, 0o600);
    assert.match(config, /MESH_KIT_PASSWORD_FILE=/);
    // A password in lyon's own environment must not win over the file it is given.
    assert.match(config, /"-u",\s*"MESH_KIT_PASSWORD",/);
    // The password itself is only in 0600 password files, nowhere else (config, logs, job files).
    for (const file of filesUnder(join(tmp, work))) {
      if (!readFileSync(file).includes(kitPassword)) continue;
      assert.fail(`${file} holds kit's admin password`);
    }
  });

  it("carries the fault switch (MESH_FAULT_DIR) to lyon's steps over SSH: proc1 fails on purpose there", async function () {
    const tmp = testFolder('mesh-simfault-');
    const faults = join(tmp, 'faults');
    mkdirSync(faults);
    writeFileSync(join(faults, 'convert.fail'), '');
    const env = {
      TMPDIR: tmp,
      MESH_FAULT_DIR: faults,
      MESH_MODANE_USER: 'simadmin',
      MESH_MODANE_PASSWORD: `pw-${randomBytes(6).toString('hex')}-modane`,
      MESH_KIT_USER: 'simadmin',
      MESH_KIT_PASSWORD: `pw-${randomBytes(6).toString('hex')}-kit`,
    };
    const r = await runMesh(['simulate', '--files', '2', '--max-attempts', '1', '--keep', '--no-dashboard'], env, 280_000);
    assert.equal(r.status, 1, r.stderr.slice(-3000));
    assert.match(r.stderr, /mesh: steps failed \([^)]*proc1: \d/, r.stderr.slice(-3000));
    assert.doesNotMatch(r.stderr, /proc0: \d/, 'proc0 (modane, not switched off) did not fail');
    const work = readdirSync(tmp).find((name) => name.startsWith('mesh-simulate-'));
    assert.ok(work, 'the kept simulation folder');
    assert.match(readFileSync(join(tmp, work, 'mesh.json'), 'utf8'), new RegExp(`"MESH_FAULT_DIR=${faults}"`));
    // What the step printed at lyon, in lyon's logs.
    const said = filesUnder(join(tmp, work, 'lyon', 'logs')).filter((file) => readFileSync(file, 'utf8').includes('failing on purpose'));
    assert.ok(said.length > 0, 'a proc1 log at lyon says it failed because of the switch');
  });
});
