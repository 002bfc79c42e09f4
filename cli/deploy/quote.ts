/**
 * Words of the config (paths, arguments) written into the files deploy makes, each in the
 * quoting of the program that reads it: systemd's ExecStart=, a POSIX shell (cron, sshd's forced
 * command), the `command="…"` option of authorized_keys. Control characters are refused
 * everywhere: none of these formats carries them reliably.
 */
import { quoteArg, remoteCommandLine } from '../../agents/executors/remote-exec.js';
import { MeshError } from '../../core/errors.js';

export { quoteArg as shellWord, remoteCommandLine as shellLine };

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const PLAIN = /^[A-Za-z0-9_@+=:,./-]+$/;

function refuseControl(word: string, where: string): void {
  if (CONTROL.test(word))
    throw new MeshError('CONFIG_INVALID', `${JSON.stringify(word).slice(0, 120)} cannot go into ${where}: it contains a control character`);
}

/**
 * An argument vector as a systemd `ExecStart=` line (systemd.service(5), "Command lines"): words
 * double-quoted when needed, `\` and `"` escaped, `%` (specifiers) and `$` (variable expansion)
 * doubled so that each word reaches the program as written.
 */
export function systemdCommandLine(argv: readonly string[]): string {
  return argv
    .map((word) => {
      refuseControl(word, 'a systemd unit');
      const quoted = PLAIN.test(word) ? word : `"${word.replace(/[\\"]/g, '\\$&')}"`;
      return quoted.replace(/%/g, '%%').replace(/\$/g, '$$$$');
    })
    .join(' ');
}

/** A systemd `Environment=`-free value for `EnvironmentFile=`: the simple form only (no quotes needed, none allowed). */
export function envFileValue(name: string, value: string): string {
  refuseControl(value, 'an environment file');
  if (/["'\\\s]/.test(value))
    throw new MeshError(
      'CONFIG_INVALID',
      `${name}=${JSON.stringify(value)}: a value with spaces, quotes or backslashes cannot go into an environment file as written`,
    );
  return `${name}=${value}`;
}

/** A text as one double-quoted word of a POSIX shell: `\`, `"`, `$` and backquote escaped. */
export function doubleQuoted(text: string): string {
  refuseControl(text, 'a shell word');
  return `"${text.replace(/[\\"$`]/g, '\\$&')}"`;
}

/**
 * A shell command line for a crontab (and scrontab) entry. Cron turns an unescaped `%` into a
 * newline and scrontab's handling differs: a `%` anywhere is refused rather than guessed.
 */
export function cronCommandLine(argv: readonly string[]): string {
  const bad = argv.find((word) => word.includes('%'));
  if (bad !== undefined) throw new MeshError('CONFIG_INVALID', `${JSON.stringify(bad)} contains %, which a crontab line turns into a newline: rename it`);
  return remoteCommandLine(argv);
}

/** The `command="…"` option of an authorized_keys line: sshd reads `\"` as `"` and nothing else as an escape. */
export function authorizedKeysCommand(script: string): string {
  refuseControl(script, 'an authorized_keys line');
  return `command="${script.replace(/"/g, '\\"')}"`;
}
