import type { Command } from 'commander';
import { controlCommand } from '../control-command.js';

export function resumeCommand(): Command {
  return controlCommand('resume');
}
