#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { setFlagsFromString } from 'node:v8';
import { LOG_LEVELS, logLevelFrom } from '../config/log-level.js';
import { fail } from './exit.js';
import { isOnePass, loadCommands } from './registry.js';

const program = new Command('mesh')
  .description("CouchMesh: a physics experiment's processing chain across sites, driven by CouchDB documents")
  .option('--config <file>', 'mesh config (default: $MESH_CONFIG, else the shipped Edelweiss profile sites/edelweiss.json)')
  .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default: $MESH_LOG_LEVEL or info)`)
  .showHelpAfterError()
  .exitOverride()
  // Every command, before it starts anything: an unknown level is bad input (status 2).
  .hook('preAction', (root) => {
    try {
      logLevelFrom(root.opts<{ logLevel?: string }>().logLevel);
    } catch (error) {
      fail(error);
    }
  });

const args = process.argv.slice(2);
// Baseline WebAssembly code only, before the first request compiles undici's parser (cli/registry.ts).
if (isOnePass(args)) setFlagsFromString('--liftoff-only');

// Only the command named is loaded (cli/registry.ts): each `mesh` process pays for its own imports only.
for (const command of await loadCommands(args)) program.addCommand(command);
for (const command of program.commands) {
  command.exitOverride();
  for (const sub of command.commands) sub.exitOverride();
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version end well; a usage error is bad input (status 2).
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  throw error;
}
