#!/usr/bin/env node
// Makes a fresh checkout runnable: installs npm dependencies when they are missing or stale,
// then compiles the TypeScript. Uses only Node's standard library, since nothing else exists yet.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const say = (line) => {
  if (!quiet) console.error(line);
};

function run(argv) {
  const result = spawnSync(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] });
  if (result.status !== 0) {
    console.error(`setup: ${argv.join(' ')} failed with status ${result.status ?? result.signal}`);
    process.exit(result.status || 1);
  }
}

// System programs the integration suites drive for real (Debian package → program).
const SYSTEM = [
  ['nats-server', 'nats-server'],
  ['openssh-server', 'sshd'],
  ['openssh-client', 'ssh-keygen'],
  ['slurm-wlm', 'slurmctld'],
  ['slurm-wlm', 'sbatch'],
  ['munge', 'munged'],
  ['chromium', 'chromium'],
  // `systemd-analyze verify` checks the units `mesh deploy` writes (no running systemd needed).
  ['systemd', 'systemd-analyze'],
];

function onPath(program) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  return dirs.some((dir) => dir && existsSync(join(dir, program)));
}

if (process.argv.includes('--system')) {
  const missing = [...new Set(SYSTEM.filter(([, program]) => !onPath(program)).map(([pkg]) => pkg))];
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      console.error(
        `setup: the test suites need these Debian packages: ${missing.join(' ')}.\n  Install them (apt-get install ${missing.join(' ')}) or run npm test as root, which installs them.`,
      );
      process.exit(1);
    }
    say(`setup: installing ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const argv of [
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', ...missing],
    ]) {
      const result = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'], env });
      if (result.status !== 0) {
        console.error(`setup: ${argv.join(' ')} failed with status ${result.status ?? result.signal}`);
        process.exit(1);
      }
    }
  }
}

const marker = join(root, 'node_modules', '.package-lock.json');
const stale = !existsSync(marker) || statSync(join(root, 'package.json')).mtimeMs > statSync(marker).mtimeMs;
if (stale) {
  say('setup: installing npm dependencies');
  run(['npm', existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}
say('setup: compiling TypeScript');
run([join(root, 'node_modules', '.bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
