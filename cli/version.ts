import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package's version, from the package.json beside dist/ (in the repository and in the installed package alike). */
export function packageVersion(): string {
  try {
    const file = fileURLToPath(new URL('../../package.json', import.meta.url));
    const version = (JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}
