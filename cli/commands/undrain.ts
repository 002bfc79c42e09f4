import type { Command } from 'commander';
import { controlCommand } from '../control-command.js';

export function undrainCommand(): Command {
  return controlCommand('undrain');
}
