/**
 * Keeps the page live: follows every server's `_changes` feed (longpoll, from "now"), and
 * rebuilds the snapshot once things settle (debounced), at most one build at a time; a slow
 * periodic refresh covers what feeds cannot tell (ages, a server coming back).
 */
import { credentialsFor } from '../config/credentials.js';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { followChanges } from '../store/changes.js';
import { Database } from '../store/database.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { distinctServers } from '../coordinator/servers.js';

export const DEBOUNCE_MS = 200;
/** Every document of the database: the page shows agents' heartbeats as well as data documents. */
const EVERYTHING = { _id: { $gt: null } };

/** Follows one server's feed until `signal` aborts, calling `onChange` for every batch of changes. */
function follow(config: MeshConfig, site: SiteConfig, onChange: () => void, logger: Logger, signal: AbortSignal): Promise<void> {
  const db = new Database({ url: site.server, database: config.database, credentials: credentialsFor(site.credentials_of), signal });
  // Whatever happened while the feed was down is in the next snapshot: start again from "now",
  // and rebuild when it fails (the page shows the server unreachable) and when it is back.
  return followChanges(db, {
    selector: EVERYTHING,
    since: 'now',
    afterFailure: 'now',
    onChanges: onChange,
    onOutage: onChange,
    logger: logger.child({ server: site.name }),
    what: site.name,
    signal,
  });
}

export interface LiveOptions {
  config: MeshConfig;
  logger: Logger;
  signal: AbortSignal;
  /** Builds and publishes a snapshot. */
  rebuild: () => Promise<void>;
  /** Whether anyone is watching: without viewers, changes and the periodic refresh build nothing. */
  watched: () => boolean;
  debounceMs?: number;
  refreshMs?: number;
}

export interface Live {
  /** Builds a snapshot soon (debounced), watched or not. */
  refresh(): void;
  /** Resolves when `signal` aborted and every follower stopped. */
  done: Promise<void>;
}

/** Starts the followers of every server's feed. */
export function runLive(options: LiveOptions): Live {
  const { config, logger, signal } = options;
  const debounceMs = options.debounceMs ?? DEBOUNCE_MS;
  let timer: NodeJS.Timeout | undefined;
  let building: Promise<void> | undefined;
  let again = false;

  const build = async () => {
    if (building) {
      again = true;
      return;
    }
    building = options.rebuild().catch((error: unknown) => logger.warn(`snapshot failed: ${errorMessage(error)}`));
    await building;
    lastBuild = Date.now();
    building = undefined;
    if (again && !signal.aborted) {
      again = false;
      refresh();
    }
  };
  const schedule = () => {
    if (options.watched()) refresh();
  };
  const refresh = () => {
    if (timer || signal.aborted) return;
    timer = setTimeout(() => {
      timer = undefined;
      void build();
    }, debounceMs);
  };
  // The periodic refresh only when nothing else rebuilt lately: changes already keep the page fresh.
  const refreshMs = options.refreshMs ?? 5_000;
  let lastBuild = 0;
  const periodic = setInterval(() => {
    if (Date.now() - lastBuild >= refreshMs - 50) schedule();
  }, refreshMs / 5);
  signal.addEventListener(
    'abort',
    () => {
      clearInterval(periodic);
      clearTimeout(timer);
    },
    { once: true },
  );
  const done = (async () => {
    await Promise.all(distinctServers(config).map((site) => follow(config, site, schedule, logger, signal)));
    await building;
  })();
  return { refresh, done };
}
