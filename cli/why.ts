import { MeshError } from '../core/errors.js';

/** The longest `--why` kept: a sentence, not a log. */
export const WHY_MAX = 500;

/** The operator's reason for an acting command: required, one line, of reasonable length. */
export function requiredWhy(why: string | undefined, what: string): string {
  const text = why?.trim() ?? '';
  if (text.length === 0) throw new MeshError('BAD_INPUT', `${what} needs --why TEXT: say why, it is kept with who and when`);
  if (text.length > WHY_MAX) throw new MeshError('BAD_INPUT', `--why is ${text.length} characters; keep it under ${WHY_MAX}`);
  if (/[\r\n]/.test(text)) throw new MeshError('BAD_INPUT', '--why must be one line');
  return text;
}
