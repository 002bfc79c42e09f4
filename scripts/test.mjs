// `npm test` after lint: every test file in parallel (3 workers on the 2-core CI machine), the
// longest files first. mocha --parallel hands the files out in the order given, so a long file
// that starts last is the run's tail; the rest follow in the usual order (integration,
// conformance, unit). Extra arguments go to mocha. Against the embedded server only: the
// conformance suite's COUCHDB_URL is for `npm run test:conformance`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
/** The longest integration files on CI (seconds of test time in the run of 2026-12-02), longest first. */
const LONGEST_FIRST = [
  'batch-limits', // 115: waits for Slurm's walltime kill
  'batch-systems', // 113
  'bench', // about 100
  'bad-input', // 105
  'faults', // 80
  'simulate', // 63
  'dashboard-browser', // 63
  'simulate-stay', // 62
  'agent', // 53
  'package', // 53
  'lost-job-wakeup', // 50
  'simulate-credentials', // 47
  'flow-metrics', // 46
  'run-steps', // 46
];

function testFiles(folder) {
  const dir = join(root, 'dist', 'test', folder);
  return readdirSync(dir)
    .filter((name) => name.endsWith('.test.js'))
    .sort()
    .map((name) => join(dir, name));
}

const all = ['integration', 'conformance', 'unit'].flatMap(testFiles);
const longest = LONGEST_FIRST.map((name) => join(root, 'dist', 'test', 'integration', `${name}.test.js`)).filter((file) => all.includes(file));
const files = [...longest, ...all.filter((file) => !longest.includes(file))];
const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const run = spawnSync(process.execPath, [mocha, '--parallel', '--jobs', '3', ...process.argv.slice(2), ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, COUCHDB_URL: '' },
});
process.exit(run.status ?? 1);
