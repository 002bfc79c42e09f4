/**
 * CouchDB 3's login lockout (`[chttpd_auth_lockout] mode = enforce`): after `threshold` failed
 * logins for one user from one peer address, that user is refused from that address (correct
 * password included) until `durationMs` after the first failure. Other addresses and other users
 * are not affected.
 */
export const DEFAULT_LOCKOUT_THRESHOLD = 5;
export const DEFAULT_LOCKOUT_MS = 300_000;
/** Bounded memory: past this many (user, address) pairs the oldest are forgotten. */
const MAX_ENTRIES = 10_000;

export const LOCKED_REASON = 'Account is temporarily locked due to multiple authentication failures';

interface Failures {
  count: number;
  since: number;
}

export class LoginLockout {
  private readonly failures = new Map<string, Failures>();

  constructor(
    private readonly threshold = DEFAULT_LOCKOUT_THRESHOLD,
    private readonly durationMs = DEFAULT_LOCKOUT_MS,
  ) {}

  private key(user: string, peer: string): string {
    return `${peer}\u0000${user}`;
  }

  private live(key: string, now: number): Failures | undefined {
    const entry = this.failures.get(key);
    if (entry && now - entry.since >= this.durationMs) {
      this.failures.delete(key);
      return undefined;
    }
    return entry;
  }

  isLocked(user: string, peer: string, now = Date.now()): boolean {
    return (this.live(this.key(user, peer), now)?.count ?? 0) >= this.threshold;
  }

  recordFailure(user: string, peer: string, now = Date.now()): void {
    const key = this.key(user, peer);
    const entry = this.live(key, now);
    if (entry) {
      entry.count++;
      return;
    }
    while (this.failures.size >= MAX_ENTRIES) this.failures.delete(this.failures.keys().next().value as string);
    this.failures.set(key, { count: 1, since: now });
  }
}
