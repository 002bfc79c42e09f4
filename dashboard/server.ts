/**
 * The live status page's server: the page's files, a JSON API, `/metrics`, and a WebSocket
 * (`/live`) that pushes a fresh snapshot after every change. Read-only for everyone; a logged-in
 * operator may retry a failed step. Started by `mesh dashboard` and by `mesh coordinator --dashboard-port`.
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { MeshConfig } from '../config/types.js';
import { type DaqDocument, parseStatus } from '../core/document.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { metricsText } from '../coordinator/metrics.js';
import { retryFailedStep, retrySite } from '../coordinator/retry.js';
import { operatorActions } from './operator-actions.js';
import type { OpenDatabase } from '../coordinator/servers.js';
import { serverOf } from '../coordinator/servers.js';
import { operatorDatabase, readerOpen } from './databases.js';
import { checkDocumentId, documentView, firstOfRun, searchFiles } from './document.js';
import { crossSiteReason, readJsonBody, sendError, sendJson, sendStatic, serialise } from './http.js';
import { runLive } from './live.js';
import { Sessions, clearedCookie, sessionCookie, tokenFrom } from './sessions.js';
import { type Snapshot, buildSnapshot, flowFor, fromFirstReachable, readingOrder } from './snapshot.js';

export const DEFAULT_DASHBOARD_PORT = 5985;
const DEFAULT_WINDOW_MS = 3600_000;
const CHART_HOURS = 12;
const MAX_WINDOW_S = 30 * 86400;
/** A snapshot older than this is rebuilt before it is served (the live refresh period). */
const FRESH_MS = 5_000;

export interface DashboardOptions {
  config: MeshConfig;
  host: string;
  port: number;
  logger: Logger;
  /** How the page reads (default: each site's credentials from the environment, with a timeout). */
  open?: OpenDatabase;
  debounceMs?: number;
}

export interface Dashboard {
  url: string;
  port: number;
  /** Requests a snapshot and resolves once it is published. */
  published(): Promise<Snapshot>;
  close(): Promise<void>;
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { config, logger } = options;
  const open = options.open ?? readerOpen(config);
  const sessions = new Sessions(config);
  const stop = new AbortController();
  let latest: { snapshot: Snapshot; text: string; at: number } | undefined;
  let waiters: Array<{ resolve: (s: Snapshot) => void; reject: (e: unknown) => void }> = [];
  const sockets = new Set<WebSocket>();

  const rebuild = async () => {
    const ready = waiters;
    waiters = [];
    try {
      const snapshot = await buildSnapshot(config, open, { windowMs: DEFAULT_WINDOW_MS, hours: CHART_HOURS });
      const text = serialise({ type: 'snapshot', snapshot });
      latest = { snapshot, text, at: Date.now() };
      for (const socket of sockets) if (socket.readyState === WebSocket.OPEN) socket.send(text);
      for (const waiter of ready) waiter.resolve(snapshot);
    } catch (error) {
      for (const waiter of ready) waiter.reject(error);
      throw error;
    }
  };
  const live = runLive({ config, logger, signal: stop.signal, rebuild, watched: () => sockets.size > 0, debounceMs: options.debounceMs });
  /** The next snapshot to be published (one is requested). */
  const published = () =>
    new Promise<Snapshot>((resolve, reject) => {
      waiters.push({ resolve, reject });
      live.refresh();
    });
  /** A snapshot no older than the refresh period: the last pushed one, or a fresh one when nobody watches. */
  const current = async () => (latest && Date.now() - latest.at < FRESH_MS ? latest.snapshot : published());

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>> = {
    'GET /api/snapshot': async (_req, res) => sendJson(res, 200, await current()),
    'GET /api/flow': async (_req, res, url) => {
      const windowS = Number(url.searchParams.get('window') ?? DEFAULT_WINDOW_MS / 1000);
      if (!Number.isFinite(windowS) || windowS < 60 || windowS > MAX_WINDOW_S) throw new MeshError('BAD_INPUT', `window is in seconds, 60–${MAX_WINDOW_S}`);
      const flow = await flowFor(config, open, { windowMs: windowS * 1000, hours: CHART_HOURS });
      sendJson(res, 200, flow);
    },
    'GET /api/doc': async (_req, res, url) => sendJson(res, 200, await documentView(config, open, checkDocumentId(url.searchParams.get('id')))),
    'GET /api/run': async (_req, res, url) => {
      const run = url.searchParams.get('run') ?? '';
      if (run.length === 0 || run.length > 200) throw new MeshError('BAD_INPUT', 'name a run (1–200 characters)');
      sendJson(res, 200, { run, doc: await firstOfRun(config, open, run) });
    },
    'GET /api/search': async (_req, res, url) => sendJson(res, 200, { results: await searchFiles(config, open, url.searchParams.get('q') ?? '') }),
    'GET /api/session': async (req, res) => {
      const session = sessions.get(tokenFrom(req.headers.cookie));
      const loginSites = sessions.loginSites();
      sendJson(
        res,
        200,
        session
          ? {
              user: session.user,
              servers: readingOrder(config)
                .filter((s) => session.accepted.has(s.server))
                .map((s) => s.name),
              login_sites: loginSites,
            }
          : { user: null, login_sites: loginSites },
      );
    },
    'POST /api/login': async (req, res) => {
      const body = await readJsonBody(req);
      if (
        typeof body.user !== 'string' ||
        typeof body.password !== 'string' ||
        body.user.length === 0 ||
        body.user.length > 200 ||
        body.password.length > 1000 ||
        (body.site !== undefined && typeof body.site !== 'string')
      ) {
        throw new MeshError('BAD_INPUT', 'send {"user": "...", "password": "...", "site": "the site whose server the password is for"}');
      }
      const { token, result } = await sessions.login(body.user, body.password, body.site as string | undefined);
      if (!token) {
        const unreachable = result.refused.filter((r) => r.unreachable);
        logger.warn({ user: body.user, unreachable: unreachable.length > 0 }, 'dashboard login not made');
        // Unreachable is not refused: the password was never checked.
        if (unreachable.length > 0) {
          sendJson(res, 502, {
            error: 'server_unreachable',
            reason: unreachable
              .map((r) => `the server of ${r.site} is unreachable (${r.reason}): your password was not checked; log in again when it is back`)
              .join('; '),
          });
          return;
        }
        sendJson(res, 403, { error: 'forbidden', reason: result.refused.map((r) => `not accepted by ${r.site}: ${r.reason}`).join('; ') });
        return;
      }
      logger.info({ user: body.user, servers: result.servers }, 'dashboard login');
      sendJson(res, 200, result, { 'Set-Cookie': sessionCookie(token, false) });
    },
    'POST /api/logout': async (req, res) => {
      sessions.logout(tokenFrom(req.headers.cookie));
      sendJson(res, 200, { user: null }, { 'Set-Cookie': clearedCookie() });
    },
    'POST /api/retry': async (req, res) => {
      const session = sessions.get(tokenFrom(req.headers.cookie));
      if (!session) {
        sendJson(res, 403, {
          error: 'forbidden',
          reason: 'the dashboard is read-only: log in as an operator (the CouchDB credentials of the servers) to retry a step',
        });
        return;
      }
      const body = await readJsonBody(req);
      const id = checkDocumentId(body.doc);
      if (body.step !== undefined && typeof body.step !== 'string') throw new MeshError('BAD_INPUT', 'step must be a string');
      const found = await fromFirstReachable(readingOrder(config), open, (db) => db.get<DaqDocument>(id));
      if ('error' in found) throw new MeshError('SERVER_UNREACHABLE', `no server answered: ${found.error}`);
      if (!found.value) throw new MeshError('NOT_FOUND', `document ${id} does not exist`);
      const step =
        (body.step as string | undefined) ??
        parseStatus(
          found.value.status,
          config.steps.map((s) => s.name),
        )?.step;
      const site = serverOf(config, config.sites[retrySite(config, step)]);
      const what = step ?? 'this step';
      // Named right: a server that is down is not one that refused the login.
      const down = latest?.snapshot.servers.find((s) => s.site === site.name && !s.reachable && !s.not_authorised);
      if (down) {
        sendJson(res, 502, {
          error: 'server_unreachable',
          reason: `the server of ${site.name}, where ${what} is retried, is unreachable (${down.error ?? 'no answer'}): retry when it is back`,
        });
        return;
      }
      const credentials = session.accepted.get(site.server);
      if (!credentials) {
        const at = readingOrder(config)
          .filter((s) => session.accepted.has(s.server))
          .map((s) => s.name);
        sendJson(res, 403, {
          error: 'forbidden',
          reason: `${what} is retried on the server of ${site.name}, and you are logged in at ${at.join(', ') || 'no server'}: log in at ${site.name} to retry it`,
        });
        return;
      }
      let result: Awaited<ReturnType<typeof retryFailedStep>>;
      try {
        result = await retryFailedStep(config, operatorDatabase(config, site, credentials), id, { step, by: `operator/${session.user} (dashboard)` });
      } catch (error) {
        if (isMeshError(error, 'SERVER_UNREACHABLE') || isMeshError(error, 'ABORTED'))
          throw new MeshError(
            'SERVER_UNREACHABLE',
            `the server of ${site.name}, where ${what} is retried, is unreachable: retry when it is back (${errorMessage(error)})`,
          );
        if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN'))
          throw new MeshError('FORBIDDEN', `the server of ${site.name} refused the retry for ${session.user}: ${error.reason ?? error.message}`);
        throw error;
      }
      live.refresh();
      logger.info({ user: session.user, doc: id, step: result.step }, 'retry from the dashboard');
      sendJson(res, 200, { ...result, server: site.name });
    },
    ...operatorActions({ config, logger, sessions, refresh: () => live.refresh() }),
    'GET /metrics': async (_req, res) => {
      const metrics = await metricsText(config, open);
      res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' });
      res.end(metrics.body);
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const route = routes[`${req.method} ${url.pathname}`];
    try {
      if (route) {
        if (req.method !== 'GET') {
          const refused = crossSiteReason(req, true);
          if (refused) {
            sendJson(res, 403, { error: 'forbidden', reason: refused });
            return;
          }
        }
        await route(req, res, url);
        return;
      }
      if (req.method === 'GET' && (await sendStatic(res, url.pathname === '/' ? 'index.html' : url.pathname.slice(1)))) return;
      sendJson(res, 404, { error: 'not_found', reason: `${req.method} ${url.pathname} is not a page of the dashboard` });
    } catch (error) {
      if (!(error instanceof MeshError)) logger.error({ path: url.pathname }, `dashboard request failed: ${errorMessage(error)}`);
      if (!res.headersSent) sendError(res, error);
      else res.destroy();
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    const refused = path === '/live' ? crossSiteReason(req, false) : `no WebSocket at ${path}`;
    if (refused) {
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\n${refused}\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      let alive = true;
      ws.on('pong', () => (alive = true));
      const ping = setInterval(() => {
        if (!alive) ws.terminate();
        alive = false;
        ws.ping();
      }, 20_000);
      ws.on('close', () => {
        clearInterval(ping);
        sockets.delete(ws);
      });
      ws.on('error', () => ws.terminate());
      if (latest && Date.now() - latest.at < FRESH_MS) ws.send(latest.text);
      else live.refresh();
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new MeshError(
            'BAD_INPUT',
            error.code === 'EADDRINUSE'
              ? `port ${options.port} on ${options.host} is in use; choose another with --port`
              : `cannot listen on ${options.host}:${options.port}: ${error.message}`,
            { cause: error },
          ),
        ),
      );
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
    stop.abort();
    await live.done;
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/`,
    port,
    published,
    close: () =>
      (closing ??= (async () => {
        stop.abort();
        for (const socket of sockets) socket.terminate();
        wss.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await live.done;
      })()),
  };
}
