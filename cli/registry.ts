/**
 * Every `mesh` command, by name, each loaded only when it is used. A command's module imports
 * what its action needs (the dashboard's express and ws, the coordinator's prom-client, NATS,
 * ssh2…): loading all of them made every `mesh` process pay for all of them, and lyon's
 * hand-over pays one `mesh agent --once` and one `mesh run-batch` per document batch.
 */
import type { Command } from 'commander';

/** In the order `mesh --help` lists them. */
export const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<Command>]> = [
  ['server', async () => (await import('./commands/server.js')).serverCommand()],
  ['couchapp', async () => (await import('./commands/couchapp.js')).couchappCommand()],
  ['ingest', async () => (await import('./commands/ingest.js')).ingestCommand()],
  ['agent', async () => (await import('./commands/agent.js')).agentCommand()],
  ['run-step', async () => (await import('./commands/run-step.js')).runStepCommand()],
  ['run-batch', async () => (await import('./commands/run-batch.js')).runBatchCommand()],
  ['coordinator', async () => (await import('./commands/coordinator.js')).coordinatorCommand()],
  ['status', async () => (await import('./commands/status.js')).statusCommand()],
  ['retry', async () => (await import('./commands/retry.js')).retryCommand()],
  ['purge', async () => (await import('./commands/purge.js')).purgeCommand()],
  ['reprocess', async () => (await import('./commands/reprocess.js')).reprocessCommand()],
  ['pause', async () => (await import('./commands/pause.js')).pauseCommand()],
  ['resume', async () => (await import('./commands/resume.js')).resumeCommand()],
  ['drain', async () => (await import('./commands/drain.js')).drainCommand()],
  ['undrain', async () => (await import('./commands/undrain.js')).undrainCommand()],
  ['adopt', async () => (await import('./commands/adopt.js')).adoptCommand()],
  ['users', async () => (await import('./commands/users.js')).usersCommand()],
  ['simulate', async () => (await import('./commands/simulate.js')).simulateCommand()],
  ['dashboard', async () => (await import('./commands/dashboard.js')).dashboardCommand()],
  ['demo', async () => (await import('./commands/demo.js')).demoCommand()],
  ['deploy', async () => (await import('./commands/deploy.js')).deployCommand()],
  ['doctor', async () => (await import('./commands/doctor.js')).doctorCommand()],
];

/** The root options that take a value (`--config FILE`): the word after them is not a command. */
const VALUE_OPTIONS = new Set(['--config', '--log-level']);

/**
 * The command these arguments (`process.argv.slice(2)`) name, and the words after it: the first
 * word that is not a root option. None when that word names no command or an option other than
 * the root's comes first (`mesh`, `mesh --help`, `mesh help agent`, a typo, an unknown option).
 */
export function namedCommand(args: readonly string[]): { name: string; rest: readonly string[] } | undefined {
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    if (word === '--') return undefined;
    if (VALUE_OPTIONS.has(word)) {
      i++;
      continue;
    }
    if ([...VALUE_OPTIONS].some((option) => word.startsWith(`${option}=`))) continue;
    if (word.startsWith('-')) return undefined;
    return COMMANDS.some(([name]) => name === word) ? { name: word, rest: args.slice(i + 1) } : undefined;
  }
  return undefined;
}

/** Only the command named is loaded; without one every command is (the help and the errors list them all, as they are). */
export function commandsToLoad(args: readonly string[]): string[] {
  const named = namedCommand(args);
  return named ? [named.name] : COMMANDS.map(([name]) => name);
}

/** Loads the commands these arguments need, in the listed order. */
export async function loadCommands(args: readonly string[]): Promise<Command[]> {
  const wanted = new Set(commandsToLoad(args));
  return Promise.all(COMMANDS.filter(([name]) => wanted.has(name)).map(([, load]) => load()));
}

/**
 * One pass, then exit: the hand-over to a site that may not keep a process alive
 * (`agent --once`, and `run-batch` in its batch jobs) and `run-step`. Such a process need not
 * have V8 optimise undici's WebAssembly HTTP parser in the background: Node waits for that work
 * to end before it exits, 0.07–0.2 s after the last request on the machine of BENCHMARKS.md.
 */
export function isOnePass(args: readonly string[]): boolean {
  const named = namedCommand(args);
  return named?.name === 'run-batch' || named?.name === 'run-step' || (named?.name === 'agent' && named.rest.includes('--once'));
}
