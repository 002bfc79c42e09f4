#!/usr/bin/env node
// Makes a fresh checkout runnable: installs npm dependencies when they are missing or stale,
// then compiles the TypeScript. Uses only Node's standard library, since nothing else exists yet.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, statSync } from 'node:fs';
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
  // Son of Grid Engine: the tests build their own cell under a temporary SGE_ROOT (cli/local/sge.ts).
  ['gridengine-master', '/usr/lib/gridengine/sge_qmaster'],
  ['gridengine-exec', '/usr/lib/gridengine/sge_execd'],
  ['gridengine-client', 'qsub'],
  ['gridengine-common', '/usr/share/gridengine/default-configuration'],
  ['chromium', 'chromium'],
  // `systemd-analyze verify` checks the units `mesh deploy` writes (no running systemd needed).
  ['systemd', 'systemd-analyze'],
];
// Answers for gridengine-common's questions: configure no system cluster (the tests make their own).
const GRIDENGINE_DEBCONF = [
  'gridengine-common shared/gridengineconfig boolean false',
  'gridengine-common shared/gridenginecell string default',
  'gridengine-common shared/gridenginemaster string localhost',
];

function onPath(program) {
  if (program.startsWith('/')) return existsSync(program);
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  return dirs.some((dir) => dir && existsSync(join(dir, program)));
}

if (process.argv.includes('--system')) {
  const missing = [...new Set(SYSTEM.filter(([, program]) => !onPath(program)).map(([pkg]) => pkg))];
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      console.error(
        `setup: the test suites need these Debian packages: ${missing.join(' ')}.\n  Install them (apt-get install ${missing.join(' ')}) or run npm test as root, which installs them` +
          (missing.some((pkg) => pkg.startsWith('gridengine-')) ? ` (gridengine: first preseed debconf with\n    ${GRIDENGINE_DEBCONF.join('\n    ')}).` : '.'),
      );
      process.exit(1);
    }
    const gridengine = missing.some((pkg) => pkg.startsWith('gridengine-'));
    // mailutils satisfies gridengine's need for a mailer without pulling in a mail server.
    const install = gridengine ? [...missing, 'mailutils'] : missing;
    say(`setup: installing ${install.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const [argv, input] of [
      ...(gridengine ? [[['debconf-set-selections'], `${GRIDENGINE_DEBCONF.join('\n')}\n`]] : []),
      [['apt-get', 'update']],
      [['apt-get', 'install', '-y', '--no-install-recommends', ...install]],
    ]) {
      const stdio = [input === undefined ? 'ignore' : 'pipe', quiet ? 'ignore' : 'inherit', 'inherit'];
      const result = spawnSync(argv[0], argv.slice(1), { stdio, env, input });
      if (result.status !== 0) {
        console.error(`setup: ${argv.join(' ')} failed with status ${result.status ?? result.signal}`);
        process.exit(1);
      }
    }
  }
}

const marker = join(root, 'node_modules', '.package-lock.json');
const stale = !existsSync(marker) || statSync(join(root, 'package.json')).mtimeMs > statSync(marker).mtimeMs;
// A linked node_modules (a git worktree sharing another checkout's install) is not ours to
// reinstall: `npm ci` would empty the folder it points to.
const linked = existsSync(join(root, 'node_modules')) && lstatSync(join(root, 'node_modules')).isSymbolicLink();
if (stale && linked) {
  say('setup: node_modules is a link to another install; not reinstalling it (run npm ci where it points)');
} else if (stale) {
  say('setup: installing npm dependencies');
  run(['npm', existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}
say('setup: compiling TypeScript');
run([join(root, 'node_modules', '.bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
