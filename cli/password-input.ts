/**
 * Where `mesh users add` takes a password from: a file (its first line), a prompt on the
 * terminal without echo, or the first line of stdin when it is not a terminal. Never argv.
 */
import { readFileSync } from 'node:fs';
import { MeshError } from '../core/errors.js';

const MAX_PASSWORD = 1000;

function checked(password: string | undefined, from: string): string {
  if (!password) throw new MeshError('BAD_INPUT', `${from} gives no password (empty first line); write the password on its first line`);
  if (password.length > MAX_PASSWORD) throw new MeshError('BAD_INPUT', `${from} gives a password longer than ${MAX_PASSWORD} characters`);
  return password;
}

export function passwordFromFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new MeshError(
      'BAD_INPUT',
      `--password-file ${file} cannot be read (${(cause as NodeJS.ErrnoException).code ?? 'error'}); give a readable file whose first line is the password`,
      { cause },
    );
  }
  return checked(text.split(/\r?\n/)[0], `--password-file ${file}`);
}

/** The first line of a non-terminal stdin (bounded: at most 64 KB are read). */
async function firstLineOfStdin(): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (Buffer.concat(chunks).includes(10) || size > 65_536) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
}

/** Reads a line on the terminal without showing it (raw mode; backspace works, Ctrl-C aborts). */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let typed = '';
    stdin.setRawMode(true);
    stdin.resume();
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (data: Buffer) => {
      for (const char of data.toString('utf8')) {
        if (char === '\u0003') return done(new MeshError('ABORTED', 'password prompt interrupted'));
        if (char === '\r' || char === '\n' || char === '\u0004') return done();
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
        else if (typed.length <= MAX_PASSWORD) typed += char;
      }
    };
    stdin.on('data', onData);
  });
}

export async function readPassword(options: { passwordFile?: string; prompt: string }): Promise<string> {
  if (options.passwordFile !== undefined) return passwordFromFile(options.passwordFile);
  if (process.stdin.isTTY) return checked(await promptHidden(options.prompt), 'the prompt');
  return checked(await firstLineOfStdin(), 'stdin');
}
