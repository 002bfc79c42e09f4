/**
 * The embedded CouchDB-compatible server: PouchDB 9 on LevelDB behind express-pouchdb 4.2
 * (fullCouchDB mode, so `validate_doc_update` and the `_replicator` database work), with the
 * gaps it has on Node 20 closed in front of it. It stands in for Apache CouchDB 3 on one machine.
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join, resolve } from 'node:path';
import express from 'express';
import { recordClients } from './client-record.js';
import { keepAliveFetch } from './replication-fetch.js';
import { installValidation } from './validation.js';
import { bulkDocsInRequestOrder } from './bulk-order.js';
import type { Credentials } from '../config/credentials.js';
import { MeshError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { authorize, guardOwnAccount } from './access.js';
import { Authenticator, isLoopbackHost } from './auth.js';
import { changesRouter, upRoute } from './changes-gaps.js';
import { installCouchWording } from './couch-wording.js';
import { errorHandler, jsonBodyGuard, queryGuard, rejectionGuard } from './guards.js';
import { DEFAULT_LOCKOUT_MS, DEFAULT_LOCKOUT_THRESHOLD, LoginLockout } from './lockout.js';
import { DEFAULT_ITERATIONS } from './passwords.js';
import { PouchDB, ensureDb, expressPouchDB, openOrCreateDb, type PouchStatic } from './pouch.js';
import { schedulerRouter } from './scheduler.js';
import { USERS_DB, USER_PREFIX, installUsersHashing } from './users.js';

export interface EmbeddedServerOptions {
  site: string;
  /** Address to bind; default 127.0.0.1. Anything but loopback requires `admin`. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** LevelDB databases, express-pouchdb's config.json and its log file all live here. */
  dataDir: string;
  /** The server admin; when absent the server is open (loopback only). */
  admin?: Credentials;
  logger: Logger;
  /** CouchDB's `[chttpd_auth_lockout]`: failed logins of one user from one address before it is locked (default 5). */
  lockoutThreshold?: number;
  /** How long such a lock lasts, in milliseconds (default 300,000). */
  lockoutMs?: number;
  /** PBKDF2 iterations of newly hashed `_users` passwords (default CouchDB 3.5's 600,000). */
  passwordIterations?: number;
  /** Test aid: a file that gets one JSON line per connection, naming the client process (server/client-record.ts). */
  recordClients?: string;
}

export interface EmbeddedServer {
  /** `http://127.0.0.1:PORT` (or the bound address), never with credentials. */
  url: string;
  port: number;
  /** Stops listening, ends open feeds and replications, closes the databases. Idempotent. */
  close(): Promise<void>;
}

/**
 * Parts of fullCouchDB mode left out: the Fauxton UI; express-pouchdb's own authentication
 * (replaced by auth.ts) and what depends on it; the HTTP log, which writes request headers
 * (Authorization included) to its log file at debug level.
 */
// 'validation' is replaced by ./validation.ts (pouchdb-validation loses replicated conflicts).
const EXCLUDED_PARTS = [
  'routes/fauxton',
  'routes/authentication',
  'routes/authorization',
  'routes/session',
  'routes/special-test-auth',
  'routes/http-log',
  'validation',
];

const MAX_BODY = '64mb';

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === 'localhost') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolvePort((server.address() as AddressInfo).port);
    });
  });
}

export async function startEmbeddedServer(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new MeshError('CONFIG_INVALID', `Port ${port} is not a TCP port (0–65535; 0 picks a free one).`);
  }
  if (!opts.admin && !isLoopbackHost(host)) {
    throw new MeshError(
      'CONFIG_INVALID',
      `Refusing to serve site ${opts.site} on ${host} without credentials: anyone who can reach it could read and write every database. ` +
        `Bind 127.0.0.1, or set MESH_<SITE>_USER and MESH_<SITE>_PASSWORD (or _PASSWORD_FILE).`,
    );
  }
  const logger = opts.logger.child({ site: opts.site, component: 'server' });
  const dataDir = resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });

  installCouchWording();
  // Every database PouchDB opens from here (the replications' remote ends included) fetches with it.
  const replicationFetch = keepAliveFetch(PouchDB.fetch);
  const pouch: PouchStatic = PouchDB.defaults({ prefix: dataDir + '/', fetch: replicationFetch.fetch });
  const pouchApp = expressPouchDB({
    mode: 'fullCouchDB',
    configPath: join(dataDir, 'config.json'),
    logPath: join(dataDir, 'express-pouchdb.log'),
    overrideMode: { exclude: EXCLUDED_PARTS },
  });
  const iterations = opts.passwordIterations ?? DEFAULT_ITERATIONS;
  pouchApp.dbWrapper.registerWrapper((name, db, next) => {
    installValidation(db as unknown as Parameters<typeof installValidation>[0]);
    if (name === USERS_DB) installUsersHashing(db, iterations);
    next();
  });
  // Its daemons (plugins, the _replicator daemon) must run before the first request, or early
  // requests fail on half-installed plugins; passing PouchDB to the constructor does not wait.
  await pouchApp.setPouchDB(pouch);
  const usersDb = () => openOrCreateDb(pouchApp, pouch, USERS_DB);
  await ensureDb(pouchApp, pouch, USERS_DB);
  const authenticator = new Authenticator({
    admin: opts.admin,
    accounts: (name) =>
      usersDb()
        .then((db) => db.get(USER_PREFIX + name))
        .catch(() => undefined),
    lockout: new LoginLockout(opts.lockoutThreshold ?? DEFAULT_LOCKOUT_THRESHOLD, opts.lockoutMs ?? DEFAULT_LOCKOUT_MS),
  });

  const app = express();
  app.disable('x-powered-by');
  app.enable('case sensitive routing');
  app.get('/_up', upRoute);
  app.use(authenticator.middleware());
  // As CouchDB: who the request was authenticated as, cookie logins (express-pouchdb's stub always says nobody).
  app.use(authenticator.sessionRoutes());
  app.use(authorize(pouchApp, pouch));
  app.use(jsonBodyGuard(MAX_BODY));
  app.use(queryGuard);
  app.use(guardOwnAccount(usersDb));
  app.use(changesRouter(pouchApp, pouch, logger));
  app.use(schedulerRouter(pouchApp, pouch));
  app.use(bulkDocsInRequestOrder);
  app.use(pouchApp);
  app.use(errorHandler(logger));

  const removeGuard = rejectionGuard(logger);
  const server = createServer(app);
  if (opts.recordClients) server.on('connection', recordClients(opts.recordClients));
  server.on('clientError', (error, socket: Socket) => {
    logger.debug({ err: errorMessage(error) }, 'malformed HTTP request');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });
  let boundPort: number;
  try {
    boundPort = await listen(server, port, host);
  } catch (cause) {
    removeGuard();
    throw new MeshError('CONFIG_INVALID', `Site ${opts.site}: cannot listen on ${host}:${port} (${errorMessage(cause)}).`, { cause });
  }
  const url = `http://${urlHost(host)}:${boundPort}`;
  logger.info({ url, dataDir, access: opts.admin ? 'admin credentials' : 'open (loopback)' }, 'embedded server listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((done) => server.close(() => done()));
      server.closeAllConnections();
      await closed;
      await pouchApp.daemonManager.stop(pouch).catch((error: unknown) => logger.warn({ err: errorMessage(error) }, 'stopping express-pouchdb daemons'));
      const open: Promise<void>[] = [];
      pouch.__dbCacheMap?.forEach((db) => open.push(db.close().catch(() => undefined)));
      await Promise.all(open);
      replicationFetch.close();
      pouchApp.couchLogger?._stream?.end();
      removeGuard();
      logger.info('embedded server closed');
    })();
    return closing;
  };
  return { url, port: boundPort, close };
}
