#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { LOG_LEVELS, logLevelFrom } from '../config/log-level.js';
import { adoptCommand } from './commands/adopt.js';
import { agentCommand } from './commands/agent.js';
import { coordinatorCommand } from './commands/coordinator.js';
import { couchappCommand } from './commands/couchapp.js';
import { dashboardCommand } from './commands/dashboard.js';
import { demoCommand } from './commands/demo.js';
import { deployCommand } from './commands/deploy.js';
import { doctorCommand } from './commands/doctor.js';
import { ingestCommand } from './commands/ingest.js';
import { retryCommand } from './commands/retry.js';
import { runBatchCommand } from './commands/run-batch.js';
import { runStepCommand } from './commands/run-step.js';
import { serverCommand } from './commands/server.js';
import { simulateCommand } from './commands/simulate.js';
import { statusCommand } from './commands/status.js';
import { usersCommand } from './commands/users.js';
import { fail } from './exit.js';

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

for (const command of [
  serverCommand(),
  couchappCommand(),
  ingestCommand(),
  agentCommand(),
  runStepCommand(),
  runBatchCommand(),
  coordinatorCommand(),
  statusCommand(),
  retryCommand(),
  adoptCommand(),
  usersCommand(),
  simulateCommand(),
  dashboardCommand(),
  demoCommand(),
  deployCommand(),
  doctorCommand(),
]) {
  program.addCommand(command);
}
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
