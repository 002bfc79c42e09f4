/**
 * The package: `npm pack` makes a tarball that holds the compiled JavaScript and what it reads at
 * run time (site profiles, the status page, the example steps), and no test, no TypeScript source,
 * no source map, nothing secret; `npm install -g --ignore-scripts` of it into a temporary prefix gives a `mesh`
 * that works (its own embedded server, a couchapp push against it) with nothing compiled at
 * install, not even by a dependency. The dependencies are bundled in the package (`bundleDependencies`): the install
 * runs `--offline` with an empty npm cache, as on a site that cannot reach the npm registry, and no traffic leaves the machine.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { Database } from '../../store/database.js';
import { testFolder } from '../support/folders.js';
import { repoRoot } from '../support/server-process.js';

const run = promisify(execFile);
const INSTALL_TIMEOUT_MS = 240_000;
/** npm as a user runs it: without the npm_* settings `npm test` hands its children (prefix, cache, lifecycle…). */
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

describe('the npm package', function () {
  this.timeout(INSTALL_TIMEOUT_MS + 60_000);
  let work: string;
  let tarball: string;
  let packed: string[];
  let server: ChildProcess | undefined;

  before(async () => {
    work = testFolder('mesh-package-');
    // dist/ is what this test runs from, built already: prepack (which builds) is checked below, not run.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repoRoot, env, maxBuffer: 64 << 20 });
    const [result] = JSON.parse(stdout) as PackResult[];
    tarball = join(work, result.filename);
    packed = result.files.map((f) => f.path);
  });
  after(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL');
      await once(server, 'exit');
    }
  });

  it('holds the compiled code and its run-time files, and no test, source, source map or secret', async () => {
    for (const file of [
      'package.json',
      'README.md',
      'dist/cli/main.js',
      'dist/server/embedded.js',
      'sites/edelweiss.json',
      'dashboard/page/index.html',
      'examples/steps/noop.mjs',
      'node_modules/pouchdb/package.json',
    ])
      assert.ok(packed.includes(file), `${file} is packed`);
    const unwanted = packed.filter(
      (p) =>
        /^dist\/(test|bench)\//.test(p) ||
        /^(test|bench|scripts|\.ci)\//.test(p) ||
        (!p.startsWith('node_modules/') && ((p.endsWith('.ts') && !p.endsWith('.d.ts')) || p.endsWith('.map'))) ||
        /(^|\/)node_modules\/(typescript|mocha|eslint|prettier|playwright-core)\//.test(p) ||
        // Ours only: ssh2 ships its own test keys (public fixtures) in node_modules/ssh2/test.
        (!p.startsWith('node_modules/') && /(^|\/)(\.env|[^/]*\.password|id_[a-z0-9]+|[^/]*_ed25519)$/.test(p)),
    );
    assert.deepEqual(unwanted, []);
    // Every compiled file has its source in the repository: nothing stale from a deleted one.
    const orphans = packed.filter(
      (p) => p.startsWith('dist/') && p.endsWith('.js') && !existsSync(join(repoRoot, p.slice('dist/'.length).replace(/\.js$/, '.ts'))),
    );
    assert.deepEqual(orphans, [], 'compiled files whose source is gone (stale): npm pack runs prepack, which removes them');
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    assert.equal(pkg.scripts.prepack, 'node scripts/prepack.mjs', 'npm pack builds first');
    for (const hook of ['preinstall', 'install', 'postinstall', 'prepare'])
      assert.equal(pkg.scripts[hook], undefined, `no ${hook} script: installing compiles nothing`);
    // Nothing secret: no private key, no password of this test run's environment.
    const unpacked = join(work, 'unpacked');
    await mkdir(unpacked);
    await run('tar', ['-xzf', tarball, '-C', unpacked]);
    const secrets = Object.entries(process.env)
      .filter(([name, value]) => /PASSWORD$/.test(name) && value && value.length >= 6)
      .map(([, value]) => value as string);
    for (const entry of await readdir(unpacked, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const text = await readFile(join(entry.parentPath, entry.name), 'utf8');
      if (!relative(unpacked, entry.parentPath).split(sep).includes('node_modules'))
        assert.doesNotMatch(text, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, entry.name);
      for (const secret of secrets) assert.ok(!text.includes(secret), `${entry.name} holds a password of the environment`);
    }
  });

  it('installs with npm install -g into a temporary prefix and gives a working mesh', async () => {
    const prefix = join(work, 'prefix');
    const started = Date.now();
    // --ignore-scripts: no dependency may build anything either (ssh2 and cpu-features would compile optional add-ons
    // where a compiler is found); the LevelDB binding is a prebuilt one, ssh2 falls back to its JavaScript crypto.
    await run(
      'npm',
      [
        'install',
        '-g',
        '--ignore-scripts',
        '--prefix',
        prefix,
        '--offline',
        '--cache',
        join(work, 'empty-npm-cache'),
        '--no-audit',
        '--no-fund',
        '--loglevel',
        'error',
        tarball,
      ],
      {
        cwd: work,
        env,
        timeout: INSTALL_TIMEOUT_MS,
        maxBuffer: 16 << 20,
      },
    );
    const seconds = (Date.now() - started) / 1000;
    console.log(`      npm install -g of the package: ${seconds.toFixed(1)} s`);
    const mesh = join(prefix, 'bin', 'mesh');
    const installed = join(prefix, 'lib', 'node_modules', 'couchmesh');
    assert.ok(existsSync(join(installed, 'dist', 'cli', 'main.js')));
    assert.ok(
      !existsSync(join(installed, 'node_modules', 'typescript')) && !existsSync(join(prefix, 'lib', 'node_modules', 'typescript')),
      'no compiler installed',
    );

    const help = await run(mesh, ['--help'], { cwd: work });
    for (const command of ['server', 'agent', 'coordinator', 'deploy', 'doctor']) assert.match(help.stdout, new RegExp(`^\\s+${command} `, 'm'), command);

    // The installed mesh's own embedded server, and a couchapp push against it.
    server = spawn(mesh, ['server', '--site', 'solo', '--data', join(work, 'data')], { cwd: work, stdio: ['ignore', 'pipe', 'ignore'] });
    const [first] = (await once(createInterface({ input: server.stdout as NodeJS.ReadableStream }), 'line')) as [string];
    const { url } = JSON.parse(first) as { url: string };
    const config = join(work, 'mesh.json');
    await writeFile(
      config,
      JSON.stringify({
        database: 'packaged',
        sites: { solo: { server: url, reachable: true, long_running: true, log_dir: join(work, 'logs') } },
        ingest: { site: 'solo' },
        steps: [{ name: 'proc0', site: 'solo', run: ['true'], out: join(work, 'out', '{run_name}_{file_number}') }],
      }),
    );
    const push = await run(mesh, ['--config', config, 'couchapp', 'push'], { cwd: work });
    assert.match(push.stdout, /_design\/mesh updated/);
    assert.ok(await new Database({ url, database: 'packaged' }).get('_design/mesh'), 'the design document is on the server');
    server.kill('SIGTERM');
    const [code] = (await once(server, 'exit')) as [number | null];
    assert.equal(code, 0, 'the server stops on SIGTERM');
  });
});
