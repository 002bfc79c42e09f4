/** `mesh pause STEP`, `mesh resume STEP`, `mesh drain SITE`, `mesh undrain SITE`: the operators' controls, one builder for the four commands. */
import { Command } from 'commander';
import { userInfo } from 'node:os';
import { controlsSite, setControl } from '../coordinator/controls.js';
import type { ControlAction } from '../core/operator-controls.js';
import { type GlobalOptions, loadConfig, openSiteDatabase, siteOf } from './context.js';
import { action } from './exit.js';
import { requiredWhy } from './why.js';

const WORDS: Record<ControlAction, { what: string; argument: string; done: string; already: string }> = {
  pause: { what: 'agents claim nothing of STEP any more; running steps finish', argument: 'step', done: 'paused', already: 'was already paused' },
  resume: { what: 'agents claim STEP again', argument: 'step', done: 'resumed', already: 'was not paused' },
  drain: { what: 'the agents of SITE take no new claims; running steps finish', argument: 'site', done: 'drained', already: 'was already drained' },
  undrain: { what: 'the agents of SITE claim again', argument: 'site', done: 'undrained', already: 'was not drained' },
};

export function controlCommand(verb: ControlAction): Command {
  const words = WORDS[verb];
  return new Command(verb)
    .description(`${words.what} (recorded with who, when and why in mesh:controls)`)
    .argument(`<${words.argument}>`, `the ${words.argument}`)
    .requiredOption('--why <text>', 'why: kept with who and when, shown by mesh status and the page')
    .option('--site <site>', 'site whose server is written (default: the coordinator’s; replication carries it to the others)')
    .action(
      action(async (target: string, options: { why: string; site?: string }, command: Command) => {
        const config = loadConfig(command.optsWithGlobals<GlobalOptions>());
        const why = requiredWhy(options.why, verb);
        const db = openSiteDatabase(config, siteOf(config, options.site ?? controlsSite(config)));
        const { changed } = await setControl(config, db, verb, target, { by: `operator/${userInfo().username}`, why });
        process.stdout.write(`${words.argument} ${target} ${changed ? words.done : `${words.already}: nothing written`}\n`);
      }),
    );
}
