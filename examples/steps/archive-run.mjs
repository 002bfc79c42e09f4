#!/usr/bin/env node
// EXAMPLE run step (scope "run"): archives one DAQ run. Makes a tar of the run's files (the
// members file lists their paths, one per line), then hands it to the archive system: here a
// stand-in that moves the finished tar to OUT (a real site would call its tape client, e.g.
// HPSS's or TSM's archive command, with the tar). Prints the archive's members, one per line,
// so the step's log says what is in it (the agent records the members in the step's record).
//   usage: archive-run.mjs RUN_NAME MEMBERS_FILE OUT
//   MESH_FAULT_DIR / MESH_RUN_LOG: see fault-switch.mjs (the program is "archive", the input the run name)
import { spawnSync } from 'node:child_process';
import { renameSync, rmSync } from 'node:fs';
import { applyFaults } from './fault-switch.mjs';

const [runName, membersFile, out] = process.argv.slice(2);
if (!runName || !membersFile || !out) {
  console.error('usage: archive-run.mjs RUN_NAME MEMBERS_FILE OUT');
  process.exit(2);
}
await applyFaults('archive', runName);

function run(argv) {
  // An argument vector, no shell: the members' paths are data.
  const done = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  if (done.error || done.status !== 0) {
    console.error(`${argv[0]} failed: ${done.error?.message ?? `exit ${done.status ?? done.signal}`}`);
    process.exit(1);
  }
  return done.stdout.toString();
}

// The tar is made beside OUT and only then "archived": OUT never holds half an archive.
const partial = `${out}.partial`;
rmSync(partial, { force: true });
// --absolute-names keeps the members' paths as catalogued; --verbatim-files-from reads each line as a name, never an option.
run(['tar', '--create', '--absolute-names', '--file', partial, '--verbatim-files-from', '--files-from', membersFile]);
renameSync(partial, out);
process.stdout.write(run(['tar', '--list', '--absolute-names', '--file', out]));
