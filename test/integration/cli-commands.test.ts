/**
 * `mesh` loads only the command it runs (cli/registry.ts): the help must stay true. Checked on
 * the real `mesh` processes: `mesh --help` lists every command of cli/commands/ with its
 * description, every command's `--help` works when it is the only one loaded (in process, one
 * also as a process), and so do sub-commands, root options before the command and `help <command>`.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { COMMANDS, commandsToLoad, isOnePass, namedCommand } from '../../cli/registry.js';
import { runMesh } from '../support/mesh.js';

const COMMANDS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'commands');
const NAMES = COMMANDS.map(([name]) => name);

/** The command names and descriptions of a commander help text's `Commands:` section (descriptions wrap). */
function listed(help: string): Map<string, string> {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  const commands = new Map<string, string>();
  let current: string | undefined;
  for (const line of section.split('\n')) {
    const entry = /^ {2}(\S+)(?: \S.*?)?\s{2,}(\S.*)$/.exec(line) ?? /^ {2}(\S+)\s+(\S.*)$/.exec(line);
    if (entry && !line.startsWith('    ')) {
      current = entry[1];
      commands.set(current, entry[2].trim());
    } else if (current && line.trim()) commands.set(current, `${commands.get(current)} ${line.trim()}`);
  }
  return commands;
}

/** At most `width` promises at a time (the machine has two cores). */
async function inBatches<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += width) results.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return results;
}

/** What `mesh <name> --help` prints, from the command alone under a root named mesh. */
async function helpOf(name: string, load: () => Promise<Command>): Promise<string> {
  let out = '';
  const command = await load();
  command.exitOverride().configureOutput({ writeOut: (text) => (out += text), writeErr: (text) => (out += text) });
  const root = new Command('mesh').exitOverride().addCommand(command);
  await assert.rejects(root.parseAsync([name, '--help'], { from: 'user' }), (error: unknown) => error instanceof CommanderError && error.exitCode === 0);
  return out;
}

describe('mesh commands loaded on demand: the help stays true', function () {
  this.timeout(60_000);

  it('which command the arguments name, and which are one pass (pure)', () => {
    assert.deepEqual(commandsToLoad(['agent', '--site', 'lyon', '--once']), ['agent']);
    assert.deepEqual(commandsToLoad(['--config', 'x.json', '--log-level', 'warn', 'run-batch', 'job.json']), ['run-batch']);
    assert.deepEqual(commandsToLoad(['--config=x.json', 'status']), ['status']);
    // The word after --config is its value, even when it is a command's name.
    assert.deepEqual(commandsToLoad(['--config', 'agent', 'status']), ['status']);
    for (const args of [[], ['--help'], ['-h', 'agent'], ['help', 'agent'], ['bogus'], ['--bogus', 'agent'], ['--', 'agent']])
      assert.deepEqual(commandsToLoad(args), NAMES, `every command for ${JSON.stringify(args)}`);
    assert.deepEqual(namedCommand(['--log-level', 'debug', 'agent', '--once'])?.rest, ['--once']);
    assert.equal(isOnePass(['agent', '--site', 'lyon', '--once']), true);
    assert.equal(isOnePass(['--config', 'x', 'run-batch', 'job.json', '--site', 'lyon']), true);
    assert.equal(isOnePass(['agent', '--site', 'modane']), false, 'a long-running agent');
    assert.equal(isOnePass(['coordinator']), false);
  });

  it('mesh --help lists every command of cli/commands/, each with the description its own --help gives', async () => {
    const files = (await readdir(COMMANDS_DIR)).filter((f) => f.endsWith('.js')).map((f) => f.replace(/\.js$/, ''));
    assert.deepEqual([...NAMES].sort(), files.sort(), 'every command module is registered, and only those');
    const root = await runMesh(['--help']);
    assert.equal(root.status, 0, root.stderr);
    const commands = listed(root.stdout);
    assert.deepEqual([...commands.keys()], [...NAMES, 'help']);

    // Each command's help as `mesh <command> --help` prints it, with only that command loaded (in process: fifteen processes would take seconds).
    for (const [name, load] of COMMANDS) {
      const help = await helpOf(name, load);
      assert.match(help, new RegExp(`^Usage: mesh ${name} `), `mesh ${name} --help`);
      // The list shows a command's summary where it has one, else its description; its own help the description.
      const command = await load();
      const listedText = (commands.get(name) ?? '').replace(/\s+/g, ' ');
      assert.equal(listedText, (command.summary() || command.description()).replace(/\s+/g, ' '), `mesh --help on ${name}`);
      assert.ok(help.replace(/\s+/g, ' ').includes(command.description().replace(/\s+/g, ' ')), `mesh ${name} --help does not say what it does`);
    }
    // And one as a process, the way main.ts loads it.
    const agent = await runMesh(['agent', '--help']);
    assert.equal(agent.status, 0, agent.stderr);
    assert.equal(agent.stdout, await helpOf('agent', COMMANDS[NAMES.indexOf('agent')][1]));
  });

  it('sub-commands, root options before the command, `help <command>`, and a typo', async () => {
    const [push, batch, viaHelp, typo] = await inBatches(
      [['couchapp', 'push', '--help'], ['--config', 'nowhere.json', '--log-level', 'warn', 'run-batch', '--help'], ['help', 'users'], ['agnet']],
      2,
      (args) => runMesh(args),
    );
    assert.equal(push.status, 0, push.stderr);
    assert.match(push.stdout, /^Usage: mesh couchapp push /);
    assert.equal(batch.status, 0, batch.stderr);
    assert.match(batch.stdout, /^Usage: mesh run-batch \[options\] <job_file>/);
    assert.equal(viaHelp.status, 0, viaHelp.stderr);
    assert.match(viaHelp.stdout, /^Usage: mesh users .*\n[\s\S]*add \[options\] <name>/);
    assert.equal(typo.status, 2);
    assert.match(typo.stderr, /unknown command 'agnet'/);
    assert.match(typo.stderr, /\(Did you mean agent\?\)|Did you mean agent/);
  });
});
