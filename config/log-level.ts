import { MeshError } from '../core/errors.js';

/** The levels the logger knows (pino's), from the most to the least verbose. */
export const LOG_LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const);
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The log level from `--log-level`, else `MESH_LOG_LEVEL`, else info. An unknown level is
 * refused before anything starts (pino would throw once the first logger is made, mid-command).
 */
export function logLevelFrom(option: string | undefined, env: NodeJS.ProcessEnv = process.env): LogLevel {
  const [key, value] = option !== undefined ? ['--log-level', option] : ['MESH_LOG_LEVEL', env.MESH_LOG_LEVEL];
  if (value === undefined || value === '') return 'info';
  if ((LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new MeshError('CONFIG_INVALID', `${key} is ${JSON.stringify(value)}, expected one of ${LOG_LEVELS.join(', ')}`);
}
