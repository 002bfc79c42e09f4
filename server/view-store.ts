/**
 * A LevelDB key/value store for the view indexes, through `leveldown`: the LevelDB binding that
 * PouchDB's own LevelDB adapter uses (resolved from PouchDB's package, so it is the same
 * native module the embedded server already loads). Keys and values are strings; an atomic
 * batch per index update keeps rows, reductions and the update sequence consistent.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const fromPouch = createRequire(require.resolve('pouchdb'));

type Callback<T = void> = (error: Error | null | undefined, result?: T) => void;

interface LevelIterator {
  next(cb: (error: Error | null | undefined, key?: string, value?: string) => void): void;
  end(cb: Callback): void;
}

interface LevelDown {
  open(opts: Record<string, unknown>, cb: Callback): void;
  close(cb: Callback): void;
  get(key: string, opts: Record<string, unknown>, cb: Callback<string>): void;
  getMany(keys: string[], opts: Record<string, unknown>, cb: Callback<Array<string | undefined>>): void;
  batch(ops: BatchOp[], opts: Record<string, unknown>, cb: Callback): void;
  iterator(opts: Record<string, unknown>): LevelIterator;
}

const leveldown = fromPouch('leveldown') as (location: string) => LevelDown;
const destroyLevel = (fromPouch('leveldown') as { destroy(location: string, cb: Callback): void }).destroy;

export type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

/** Bounds of a key range, as LevelDB takes them (strings compare by UTF-8 bytes). */
export interface KeyRange {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  reverse?: boolean;
  limit?: number;
}

function promise<T>(call: (cb: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => call((error, result) => (error ? reject(error) : resolve(result as T))));
}

export class ViewStore {
  private constructor(private readonly db: LevelDown) {}

  static async open(location: string): Promise<ViewStore> {
    const db = leveldown(location);
    await promise((cb) => db.open({ createIfMissing: true }, cb));
    return new ViewStore(db);
  }

  static destroy(location: string): Promise<void> {
    return promise((cb) => destroyLevel(location, cb));
  }

  close(): Promise<void> {
    return promise((cb) => this.db.close(cb));
  }

  async get(key: string): Promise<string | undefined> {
    try {
      return await promise<string>((cb) => this.db.get(key, { asBuffer: false }, cb));
    } catch (error) {
      if (/NotFound/i.test(String((error as Error).message))) return undefined;
      throw error;
    }
  }

  getMany(keys: string[]): Promise<Array<string | undefined>> {
    if (keys.length === 0) return Promise.resolve([]);
    return promise((cb) => this.db.getMany(keys, { asBuffer: false }, cb));
  }

  batch(ops: BatchOp[]): Promise<void> {
    return promise((cb) => this.db.batch(ops, {}, cb));
  }

  /** Entries of a range in order; `visit` returns false to stop early. Reads one consistent snapshot. */
  async scan(range: KeyRange, visit: (key: string, value: string) => boolean | void): Promise<void> {
    const it = this.db.iterator({ ...range, limit: range.limit ?? -1, keyAsBuffer: false, valueAsBuffer: false });
    try {
      for (;;) {
        const entry = await new Promise<[string, string] | undefined>((resolve, reject) =>
          it.next((error, key, value) => (error ? reject(error) : resolve(key === undefined ? undefined : [key, value as string]))),
        );
        if (!entry || visit(entry[0], entry[1]) === false) return;
      }
    } finally {
      await promise((cb) => it.end(cb));
    }
  }
}
