import type { Command } from 'commander';
import { controlCommand } from '../control-command.js';

export function drainCommand(): Command {
  return controlCommand('drain');
}
