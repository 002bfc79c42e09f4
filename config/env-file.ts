import { readFileSync } from 'node:fs';
import { MeshError, errorMessage } from '../core/errors.js';

const LINE = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;

/**
 * The variables of an environment file as systemd's `EnvironmentFile=` reads the simple form:
 * `NAME=value` lines, blank lines and `#` or `;` comments, a value optionally in matching single
 * or double quotes. What `mesh deploy` writes is of that form. A line of any other form is refused
 * with its number; values are never put in a message (the file may hold secrets).
 */
export function parseEnvFile(text: string, source: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const match = LINE.exec(line);
    if (!match)
      throw new MeshError('CONFIG_INVALID', `${source} line ${index + 1} is not NAME=value (an environment file as systemd's EnvironmentFile= reads it)`);
    const value = match[2].trim();
    const quoted = value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0]);
    env[match[1]] = quoted ? value.slice(1, -1) : value;
  });
  return env;
}

export function readEnvFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new MeshError('CONFIG_INVALID', `cannot read the environment file ${file}: ${errorMessage(cause)}`, { cause });
  }
  return parseEnvFile(text, file);
}
