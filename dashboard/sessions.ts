/**
 * Operators of the status page: a login names the server the password is for (the operator's
 * own), is checked against that server only, once, and is remembered in memory behind a random
 * token in an HttpOnly, SameSite=Strict cookie. A password is never sent to a server it was not
 * typed for: each wrong try counts towards CouchDB's login lockout of that name, so trying one
 * password on every server locked the same name out on the others (issue 9, item 3).
 */
import { randomBytes } from 'node:crypto';
import type { Credentials } from '../config/credentials.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import { distinctServers } from '../coordinator/servers.js';
import { operatorDatabase } from './databases.js';

export const COOKIE = 'mesh_session';
const SESSION_MS = 8 * 3600_000;
const MAX_SESSIONS = 1000;

export interface Session {
  user: string;
  /** Per server URL, the credentials that server accepted. */
  accepted: Map<string, Credentials>;
  expires: number;
}

export interface LoginResult {
  user: string;
  /** Sites whose server accepted the login. */
  servers: string[];
  /** Sites whose server refused it or could not be asked (`unreachable`: the password was not checked), and why. */
  refused: Array<{ site: string; reason: string; unreachable?: true }>;
}

/** How long a login waits for the server: an operator at the page waits for the answer. */
const LOGIN_TIMEOUT_MS = 10_000;

/**
 * Whether `server` accepts these credentials as a named user, or why not: refused (the server
 * said no) or unreachable (it could not be asked, so the password was not checked). A server
 * that answers the same request without credentials (an open, "admin party" server) proves
 * nothing and is refused.
 */
async function accepts(config: MeshConfig, site: SiteConfig, credentials: Credentials): Promise<{ reason: string; unreachable?: true } | undefined> {
  try {
    const session = await operatorDatabase(config, site, credentials, '', AbortSignal.timeout(LOGIN_TIMEOUT_MS)).session();
    if (session.name !== credentials.user) {
      return { reason: session.name === null ? 'the server has no admin, so it cannot tell who you are' : 'the server did not confirm the user' };
    }
    return undefined;
  } catch (error) {
    if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN')) return { reason: error.reason ?? 'name or password is incorrect' };
    if (isMeshError(error, 'SERVER_UNREACHABLE') || isMeshError(error, 'ABORTED')) return { reason: errorMessage(error), unreachable: true };
    return { reason: errorMessage(error) };
  }
}

export class Sessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly config: MeshConfig) {}

  /** The sites an operator may log in at: one per distinct server. */
  loginSites(): string[] {
    return distinctServers(this.config).map((s) => s.name);
  }

  /**
   * Checks the password against the server of `siteName` only (one request), or the only server
   * when the mesh has one. Without a site on a mesh of several servers nothing is sent.
   */
  async login(user: string, password: string, siteName: string | undefined, now = Date.now()): Promise<{ token?: string; result: LoginResult }> {
    const servers = distinctServers(this.config);
    const site =
      siteName === undefined && servers.length === 1
        ? servers[0]
        : servers.find((s) => s.name === siteName || (siteName !== undefined && this.config.sites[siteName]?.server === s.server));
    if (!site) {
      throw new MeshError(
        'BAD_INPUT',
        `say which server the password is for: send "site", one of ${servers.map((s) => s.name).join(', ')}${siteName === undefined ? '' : ` (not ${JSON.stringify(siteName)})`}`,
      );
    }
    const credentials = { user, password };
    const refusal = await accepts(this.config, site, credentials);
    const result: LoginResult = {
      user,
      servers: refusal === undefined ? [site.name] : [],
      refused: refusal === undefined ? [] : [{ site: site.name, ...refusal }],
    };
    if (refusal !== undefined) return { result };
    const accepted = new Map([[site.server, credentials]]);
    this.prune(now);
    const token = randomBytes(32).toString('base64url');
    this.sessions.set(token, { user, accepted, expires: now + SESSION_MS });
    return { token, result };
  }

  /** The live session behind a token, if any. */
  get(token: string | undefined, now = Date.now()): Session | undefined {
    if (!token) return undefined;
    const session = this.sessions.get(token);
    if (session && session.expires <= now) this.sessions.delete(token);
    return session && session.expires > now ? session : undefined;
  }

  logout(token: string | undefined): void {
    if (token) this.sessions.delete(token);
  }

  private prune(now: number): void {
    for (const [token, session] of this.sessions) if (session.expires <= now) this.sessions.delete(token);
    // Bounded memory: the oldest sessions go first.
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
  }
}

export function sessionCookie(token: string, secure: boolean): string {
  return `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(): string {
  return `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
}

export function tokenFrom(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === COOKIE) return value.join('=');
  }
  return undefined;
}
