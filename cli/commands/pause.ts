import type { Command } from 'commander';
import { controlCommand } from '../control-command.js';

export function pauseCommand(): Command {
  return controlCommand('pause');
}
