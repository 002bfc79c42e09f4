/**
 * The optional NATS channel: wake-up hints (`ready`, `claimed`, `done`) and a cross-site claim
 * registry in JetStream KV. Nothing here is needed for correctness: every method degrades to a
 * no-op or to `'unavailable'` when NATS cannot be reached, and the connection is (re)made in
 * the background, so a NATS outage only makes the mesh slower.
 */
import { createHash } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError, jetstream } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { type NatsConnection, type Subscription, connect } from '@nats-io/transport-node';
import { MeshError, errorMessage } from './errors.js';
import { type Logger, scrubUrl } from './log.js';
import { sleep } from './sleep.js';

export type HintKind = 'ready' | 'claimed' | 'done';
export const HINT_KINDS: readonly HintKind[] = Object.freeze(['ready', 'claimed', 'done']);

export interface Hint {
  db: string;
  doc: string;
  step: string;
  site: string;
}

export type Reservation = 'reserved' | 'taken' | 'unavailable';

export interface ChannelOptions {
  logger: Logger;
  /** Aborting it stops reconnecting and closes the channel. */
  signal?: AbortSignal;
  /** Client name shown by the server's monitoring (e.g. the agent name). */
  name?: string;
  credentials?: { user: string; password: string };
  /** Lifetime of a registry key without refresh: a little longer than the longest lease. */
  claimTtlMs?: number;
}

/** Delays between connection attempts, the last one repeated; each with ±20 % jitter. */
export const RECONNECT_DELAYS_MS: readonly number[] = Object.freeze([250, 500, 1000, 2000, 5000]);

export function reconnectDelay(attempt: number, delays: readonly number[] = RECONNECT_DELAYS_MS, random: () => number = Math.random): number {
  const base = delays[Math.min(Math.max(attempt, 1), delays.length) - 1];
  return Math.round(base * (0.8 + random() * 0.4));
}

/** A subject token or bucket-name part: `[A-Za-z0-9_-]`; anything else is replaced and a hash keeps names apart. */
export function natsToken(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_-]/g, '_');
  return safe === name ? name : `${safe}_${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
}

export function hintSubject(db: string, kind: HintKind, step: string): string {
  return `mesh.${natsToken(db)}.${kind}.${natsToken(step)}`;
}

export function claimBucket(db: string): string {
  return `mesh_claims_${natsToken(db)}`;
}

/** Document ids may hold anything; base64url keeps every registry key valid and distinct. */
export function claimKey(doc: string, step: string): string {
  return `${natsToken(step)}.${Buffer.from(doc, 'utf8').toString('base64url') || '_'}`;
}

/** The errors this file tells apart; everything else means "NATS is not usable right now". */
function keyExists(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

interface Held {
  db: string;
  key: string;
  holder: string;
  revision: number;
}

interface Listener {
  subjects: string[];
  handler: (kind: HintKind, hint: Hint) => void;
  subs: Subscription[];
}

const DEFAULT_CLAIM_TTL_MS = 10 * 60_000;
const REQUEST_TIMEOUT_MS = 2000;

export class MeshChannel {
  private nc: NatsConnection | undefined;
  private connected = false;
  private readonly stopping = new AbortController();
  private readonly buckets = new Map<string, Promise<KV>>();
  private readonly listeners = new Set<Listener>();
  private readonly held = new Map<string, Held>();
  private readonly logger: Logger;
  private readonly url: string;
  private refresher: ReturnType<typeof setInterval> | undefined;
  private maintaining: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** Failed attempts of our own connect loop, and of the client's reconnect loop. */
  private failures = 0;
  private clientRetries = 0;
  private everConnected = false;

  private constructor(
    url: string,
    private readonly options: ChannelOptions,
  ) {
    this.url = url;
    this.logger = options.logger.child({ nats: scrubUrl(url) });
  }

  /**
   * Starts connecting in the background and returns at once (after the first attempt): it never
   * throws because NATS is down, it keeps trying. Only a URL carrying credentials is refused.
   */
  static async connect(url: string, options: ChannelOptions): Promise<MeshChannel> {
    if (/^[a-z]+:\/\/[^/]*@/i.test(url))
      throw new MeshError('CONFIG_INVALID', `the NATS URL ${scrubUrl(url)} carries credentials; put them in MESH_NATS_USER and MESH_NATS_PASSWORD instead`);
    const channel = new MeshChannel(url, options);
    options.signal?.addEventListener('abort', () => void channel.close(), { once: true });
    const firstAttempt = channel.attempt();
    channel.maintaining = firstAttempt.then((ok) => channel.maintain(ok));
    await firstAttempt;
    const ttl = options.claimTtlMs ?? DEFAULT_CLAIM_TTL_MS;
    channel.refresher = setInterval(() => void channel.refreshHeld(), Math.max(1000, ttl / 3));
    channel.refresher.unref();
    return channel;
  }

  /** Connected right now (hints go out, the registry answers). */
  get available(): boolean {
    return this.connected && !this.stopping.signal.aborted;
  }

  /** Fire and forget; a no-op while disconnected. */
  publish(kind: HintKind, hint: Hint): void {
    if (!this.available || !this.nc) return;
    try {
      this.nc.publish(hintSubject(hint.db, kind, hint.step), JSON.stringify(hint));
    } catch (error) {
      this.logger.debug(`hint not sent: ${errorMessage(error)}`);
    }
  }

  /** Hints of these kinds for one database, kept across reconnects; malformed messages are dropped. */
  subscribe(db: string, kinds: readonly HintKind[], handler: (kind: HintKind, hint: Hint) => void): { unsubscribe(): void } {
    const listener: Listener = { subjects: kinds.map((kind) => `mesh.${natsToken(db)}.${kind}.*`), handler, subs: [] };
    this.listeners.add(listener);
    if (this.nc) this.attach(this.nc, listener);
    return {
      unsubscribe: () => {
        this.listeners.delete(listener);
        for (const sub of listener.subs) sub.unsubscribe();
        listener.subs = [];
      },
    };
  }

  /** Create-if-absent of (doc, step) in the registry. `'unavailable'` means: decide with CouchDB alone. */
  async tryReserve(db: string, doc: string, step: string, holder: string): Promise<Reservation> {
    const kv = await this.bucket(db);
    if (!kv) return 'unavailable';
    const key = claimKey(doc, step);
    // Held by this process already (another copy of the document offered while its claim is out):
    // a second attempt must not get it, or its lost claim's release would delete the key the
    // first attempt still holds, and another site could run the step meanwhile.
    if (this.held.has(`${db}\u0000${key}`)) return 'taken';
    try {
      const revision = await kv.create(key, JSON.stringify({ holder, state: 'held', at: new Date().toISOString() }));
      this.held.set(`${db}\u0000${key}`, { db, key, holder, revision });
      return 'reserved';
    } catch (error) {
      if (!keyExists(error)) return this.unusable('reserve', error);
    }
    try {
      const entry = await kv.get(key);
      const value = entry && entry.operation === 'PUT' ? (entry.json() as { holder?: string; state?: string }) : undefined;
      if (entry && value?.holder === holder && value.state === 'held') {
        this.held.set(`${db}\u0000${key}`, { db, key, holder, revision: entry.revision });
        return 'reserved';
      }
    } catch (error) {
      return this.unusable('read reservation', error);
    }
    return 'taken';
  }

  /** The step succeeded: the key stays (marked done) until it expires, so a site that has not yet replicated the result cannot run it again. */
  async complete(db: string, doc: string, step: string, holder: string): Promise<void> {
    await this.settle(db, doc, step, holder, 'done');
  }

  /** Gives the reservation up (failure, release, lost claim): deleted only if we still hold it. */
  async release(db: string, doc: string, step: string, holder: string): Promise<void> {
    await this.settle(db, doc, step, holder, 'delete');
  }

  /** Drains (pending hints go out), then waits until closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stopping.abort();
    if (this.refresher) clearInterval(this.refresher);
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      const drained = this.connected ? nc.drain().catch(() => nc.close()) : nc.close();
      const timeout = sleep(REQUEST_TIMEOUT_MS).then(() => nc.close());
      await Promise.race([drained, timeout]).catch(() => undefined);
      await nc.closed();
    }
    this.connected = false;
    await this.maintaining;
  }

  private async settle(db: string, doc: string, step: string, holder: string, how: 'done' | 'delete'): Promise<void> {
    const key = claimKey(doc, step);
    const id = `${db}\u0000${key}`;
    const held = this.held.get(id);
    this.held.delete(id);
    if (!held || held.holder !== holder) return;
    const kv = await this.bucket(db);
    if (!kv) return;
    try {
      if (how === 'done') await kv.update(key, JSON.stringify({ holder, state: 'done', at: new Date().toISOString() }), held.revision);
      else await kv.delete(key, { previousSeq: held.revision });
    } catch (error) {
      // Someone else's key now (ours expired), or NATS is gone: the TTL cleans up.
      this.logger.debug({ doc, step }, `reservation not ${how === 'done' ? 'marked done' : 'released'}: ${errorMessage(error)}`);
    }
  }

  /** Keeps the keys of running steps alive: a step may outlive the bucket TTL through lease renewals. */
  private async refreshHeld(): Promise<void> {
    if (!this.available) return;
    for (const [id, held] of this.held) {
      const kv = await this.bucket(held.db);
      if (!kv) return;
      try {
        held.revision = await kv.update(held.key, JSON.stringify({ holder: held.holder, state: 'held', at: new Date().toISOString() }), held.revision);
      } catch (error) {
        if (keyExists(error)) {
          this.held.delete(id);
          this.logger.warn({ key: held.key }, 'reservation lost to another holder after it expired');
        }
      }
    }
  }

  private unusable(what: string, error: unknown): Reservation {
    this.logger.debug(`claim registry: ${what}: ${errorMessage(error)}`);
    return 'unavailable';
  }

  /** The registry bucket of a database, created if absent (a failed attempt is retried next time). */
  private async bucket(db: string): Promise<KV | undefined> {
    const nc = this.nc;
    if (!this.available || !nc) return undefined;
    let pending = this.buckets.get(db);
    if (!pending) {
      const kvm = new Kvm(jetstream(nc, { timeout: REQUEST_TIMEOUT_MS }));
      pending = kvm.create(claimBucket(db), { history: 1, ttl: this.options.claimTtlMs ?? DEFAULT_CLAIM_TTL_MS, timeout: REQUEST_TIMEOUT_MS });
      this.buckets.set(db, pending);
    }
    try {
      return await pending;
    } catch (error) {
      if (this.buckets.get(db) === pending) this.buckets.delete(db);
      this.unusable(`bucket ${claimBucket(db)}`, error);
      return undefined;
    }
  }

  private attach(nc: NatsConnection, listener: Listener): void {
    listener.subs = listener.subjects.map((subject) =>
      nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error) return;
          const kind = msg.subject.split('.')[2] as HintKind;
          try {
            const hint = msg.json() as Partial<Hint>;
            if (typeof hint.doc !== 'string' || typeof hint.step !== 'string' || typeof hint.db !== 'string' || !HINT_KINDS.includes(kind)) return;
            listener.handler(kind, { db: hint.db, doc: hint.doc, step: hint.step, site: String(hint.site ?? '') });
          } catch (cause) {
            this.logger.debug(`malformed hint on ${msg.subject}: ${errorMessage(cause)}`);
          }
        },
      }),
    );
  }

  /** One connection attempt; true when connected. */
  private async attempt(): Promise<boolean> {
    if (this.stopping.signal.aborted) return false;
    try {
      const nc = await connect({
        servers: this.url,
        name: this.options.name,
        user: this.options.credentials?.user,
        pass: this.options.credentials?.password,
        timeout: REQUEST_TIMEOUT_MS,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectDelayHandler: () => reconnectDelay(++this.clientRetries),
        pingInterval: 5000,
        maxPingOut: 2,
      });
      if (this.stopping.signal.aborted) {
        await nc.close();
        return false;
      }
      this.adopt(nc);
      return true;
    } catch (error) {
      this.failures++;
      if (this.failures === 1 || this.failures % 20 === 0)
        this.logger.warn(
          { attempt: this.failures },
          `NATS unreachable (${scrubUrl(errorMessage(error))}); working through CouchDB alone, retrying in the background`,
        );
      return false;
    }
  }

  private adopt(nc: NatsConnection): void {
    this.nc = nc;
    this.connected = true;
    this.buckets.clear();
    this.logger.info(this.everConnected ? 'NATS reconnected' : 'NATS connected');
    this.everConnected = true;
    this.failures = 0;
    this.clientRetries = 0;
    for (const listener of this.listeners) this.attach(nc, listener);
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') {
          this.connected = false;
          this.logger.warn('NATS disconnected; working through CouchDB alone until it is back');
        } else if (status.type === 'reconnect') {
          this.connected = true;
          this.clientRetries = 0;
          this.logger.info('NATS reconnected');
        }
      }
    })().catch(() => undefined);
  }

  /** Reconnects whenever the client gave up (initial failure, or a closed connection). */
  private async maintain(connected: boolean): Promise<void> {
    while (!this.stopping.signal.aborted) {
      if (connected && this.nc) {
        const error = await this.nc.closed();
        this.connected = false;
        if (this.stopping.signal.aborted) return;
        this.logger.warn(`NATS connection closed${error ? ` (${errorMessage(error)})` : ''}; reconnecting`);
        this.nc = undefined;
      }
      if (!(await sleep(reconnectDelay(Math.max(1, this.failures)), this.stopping.signal))) return;
      connected = await this.attempt();
    }
  }
}
