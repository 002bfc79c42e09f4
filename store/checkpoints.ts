/**
 * Where a reader of the changes feed stopped, kept in a `_local` document of the database it
 * reads: not replicated and not validated, so saving it costs no validated write.
 */
import { isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

interface CheckpointDocument {
  since: string | number;
  updated: string;
}

export class FeedCheckpoint {
  private rev: string | undefined;

  /** `name`: unique per reader, e.g. `mesh-changes-<site>-<agent>`. */
  constructor(
    private readonly db: Database,
    private readonly name: string,
  ) {}

  /** The saved position, or undefined on a first start. */
  async read(): Promise<string | number | undefined> {
    const saved = await this.db.getLocal<CheckpointDocument>(this.name);
    this.rev = saved?._rev;
    return saved?.since;
  }

  /** Saves `since`; a 409 (another process with the same name) adopts the stored revision for the next save. */
  async save(since: string | number, now: Date): Promise<void> {
    try {
      this.rev = await this.db.putLocal(this.name, { ...(this.rev ? { _rev: this.rev } : {}), since, updated: now.toISOString() });
    } catch (error) {
      if (!isMeshError(error, 'CONFLICT')) throw error;
      this.rev = (await this.db.getLocal<CheckpointDocument>(this.name))?._rev;
    }
  }
}
