/**
 * The custody pass of a site's agent: for each document whose custody step's copy this site
 * holds (couchapp/mesh-views.ts CUSTODY_DUE) and has not verified yet, re-read the copy under
 * the site's storage and append what was found to `custody[]` (store/custody.ts). A copy that
 * differs is recorded too, with the sha256 it has: `mesh purge` lists it as disagreeing. A copy
 * that cannot be read (missing, permission, a storage hiccup) is not recorded: it is tried again
 * at the next pass, and said once per document in the log.
 *
 * One pass at a time; the agent starts one at each sweep and an `--once` run waits for it.
 */
import { lstat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { sha256File } from '../core/checksum.js';
import type { CustodyRecord } from '../core/custody.js';
import type { DaqDocument } from '../core/document.js';
import { errorMessage } from '../core/errors.js';
import { appendCustody, custodyDue } from '../store/custody.js';
import type { AgentContext } from './context.js';

/** Documents verified per pass: a bound on one pass's reading, the next pass goes on. */
const PASS_LIMIT = 200;

export class CustodyKeeper {
  private current: Promise<number> | undefined;
  /** `doc@rev` whose copy could not be read: said once in the log, tried again next pass. */
  private readonly unreadable = new Set<string>();
  verified = 0;
  disagreeing = 0;

  constructor(private readonly ctx: AgentContext) {}

  /** Whether any step of the config makes a copy (else the pass never queries). */
  get enabled(): boolean {
    return this.ctx.config.steps.some((s) => s.custody === true);
  }

  /** Starts a pass unless one runs; resolves with how many records it wrote. Never throws. */
  pass(signal: AbortSignal): Promise<number> {
    if (!this.enabled) return Promise.resolve(0);
    this.current ??= this.run(signal)
      .catch((error) => {
        this.ctx.logger.warn(`custody pass: ${errorMessage(error)}`);
        return 0;
      })
      .finally(() => {
        this.current = undefined;
      });
    return this.current;
  }

  /** The pass running now, if any. */
  settled(): Promise<unknown> {
    return this.current ?? Promise.resolve();
  }

  /** For an `--once` run's end: the pass running now, then one more (the running one may have queried before the last steps finished). */
  async finish(signal: AbortSignal): Promise<void> {
    await this.settled();
    await this.pass(signal);
  }

  private async run(signal: AbortSignal): Promise<number> {
    const due = await custodyDue(this.ctx.db, this.ctx.site.name, PASS_LIMIT);
    let written = 0;
    for (const { doc, step } of due) {
      if (signal.aborted) break;
      const record = await this.verify(doc, step, signal);
      if (!record) continue;
      const result = await appendCustody(this.ctx.db, doc, record, signal);
      if (result.kind === 'written' && result.changed) {
        written++;
        const agrees = record.sha256 === doc.checksum?.sha256 && record.size_in_bytes === doc.size_in_bytes;
        if (agrees) this.verified++;
        else this.disagreeing++;
        const log = { doc: doc._id, step, file: record.file };
        if (agrees) this.ctx.logger.info(log, 'custody verified');
        else this.ctx.logger.error({ ...log, sha256: record.sha256, size: record.size_in_bytes }, 'custody copy differs from the catalogued file');
      } else if (result.kind !== 'written') {
        this.ctx.logger.warn({ doc: doc._id, step }, `custody not recorded: ${result.kind === 'gone' ? 'the document is gone' : result.error.message}`);
      }
    }
    return written;
  }

  /** The record of what this site's copy is, or undefined when it cannot be read now. */
  private async verify(doc: DaqDocument, step: string, signal: AbortSignal): Promise<CustodyRecord | undefined> {
    const file = (doc[step] as { file?: unknown } | undefined)?.file;
    const storage = this.ctx.site.storage;
    const problem =
      typeof file !== 'string' || !isAbsolute(file)
        ? `${step}.file is ${JSON.stringify(file)}, not an absolute path`
        : storage && !inside(storage, file)
          ? `${file} is not under the site's storage ${storage}`
          : undefined;
    try {
      if (problem) throw new Error(problem);
      const path = file as string;
      const info = await lstat(path);
      if (!info.isFile()) throw new Error(`${path} is not a regular file`);
      const sha256 = await sha256File(path, signal);
      const after = await lstat(path);
      // Written to while read: not a verdict on the copy, look again next pass.
      if (after.size !== info.size || after.mtimeMs !== info.mtimeMs) throw new Error(`${path} changed while it was read`);
      return {
        site: this.ctx.site.name,
        step,
        file: path,
        sha256,
        size_in_bytes: info.size,
        verified_at: this.ctx.now().toISOString(),
        account: this.ctx.db.user,
      };
    } catch (error) {
      if (signal.aborted) return undefined;
      const key = `${doc._id}@${doc._rev}`;
      if (!this.unreadable.has(key)) {
        this.unreadable.add(key);
        this.ctx.logger.warn({ doc: doc._id, step }, `custody: cannot read this site's copy: ${errorMessage(error)}`);
      }
      return undefined;
    }
  }
}

function inside(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel.length > 0 && !rel.startsWith('..') && !isAbsolute(rel);
}
