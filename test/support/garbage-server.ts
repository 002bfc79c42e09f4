/**
 * A tiny loopback HTTP server that answers with scripted garbage, for the bad-input tests.
 * Each request is matched against the rules in order (`match`: a regular expression over
 * `METHOD /path?query`); the first rule whose `times` is not used up answers. A request no rule
 * answers goes to `upstream` (a real embedded server) unchanged, or gets a plain 404 when there
 * is none. Every request is counted, so a test can tell a retry with backoff from a tight loop.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ScriptedAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /**
   * How the answer is sent: `whole` (default); `truncate` (announces twice the body's length,
   * sends the body, cuts the connection); `reset` (cuts the connection before any answer);
   * `hang` (never answers); `slow` (headers, then one byte of `body` every `every_ms`, forever);
   * `huge` (headers, then `body` over and over until `bytes` were sent); `lines` (each of
   * `lines` then a newline, `every_ms` apart, then the end).
   */
  mode?: 'whole' | 'truncate' | 'reset' | 'hang' | 'slow' | 'huge' | 'lines';
  every_ms?: number;
  bytes?: number;
  lines?: string[];
}

export interface Rule {
  /** Regular expression over `METHOD /path?query`; every request when absent. */
  match?: string;
  /** Answer only this many matching requests, then let the next rule (or the upstream) answer. */
  times?: number;
  answer: ScriptedAnswer;
}

export interface GarbageServer {
  url: string;
  /** `METHOD /path` of every request received, in order. */
  requests: string[];
  stop(): Promise<void>;
}

function send(answer: ScriptedAnswer, req: IncomingMessage, res: ServerResponse, alive: () => boolean): void {
  const status = answer.status ?? 200;
  const headers = answer.headers ?? { 'content-type': 'application/json' };
  const body = answer.body ?? '';
  switch (answer.mode ?? 'whole') {
    case 'whole':
      res.writeHead(status, headers).end(body);
      return;
    case 'truncate':
      res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(body) * 2 + 10) });
      res.write(body, () => setTimeout(() => req.socket.destroy(), 20));
      return;
    case 'reset':
      req.socket.resetAndDestroy();
      return;
    case 'hang':
      return;
    case 'slow': {
      res.writeHead(status, headers);
      let i = 0;
      const timer = setInterval(() => {
        if (!alive() || res.destroyed) return clearInterval(timer);
        res.write(body[i++ % Math.max(1, body.length)] ?? ' ');
      }, answer.every_ms ?? 200);
      res.once('close', () => clearInterval(timer));
      return;
    }
    case 'huge': {
      res.writeHead(status, headers);
      const chunk = Buffer.from(body.length > 0 ? body.repeat(Math.ceil(65536 / body.length)) : ' '.repeat(65536));
      let sent = 0;
      const pump = () => {
        while (alive() && !res.destroyed && sent < (answer.bytes ?? 1e9)) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (!res.destroyed) res.end();
      };
      pump();
      return;
    }
    case 'lines': {
      res.writeHead(status, headers);
      const lines = [...(answer.lines ?? [])];
      const next = () => {
        if (!alive() || res.destroyed) return;
        const line = lines.shift();
        if (line === undefined) return void res.end();
        res.write(`${line}\n`);
        setTimeout(next, answer.every_ms ?? 10);
      };
      next();
      return;
    }
  }
}

function proxy(upstream: string, req: IncomingMessage, res: ServerResponse): void {
  const target = new URL(req.url ?? '/', upstream);
  const forward = httpRequest(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  forward.on('error', () => res.destroy());
  req.pipe(forward);
}

export async function startGarbageServer(rules: readonly Rule[], upstream?: string): Promise<GarbageServer> {
  const used = rules.map(() => 0);
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let running = true;
  const server = createServer((req, res) => {
    const line = `${req.method} ${req.url}`;
    requests.push(line);
    const index = rules.findIndex(
      (rule, i) => (rule.match === undefined || new RegExp(rule.match).test(line)) && (rule.times === undefined || used[i] < rule.times),
    );
    if (index >= 0) {
      used[index]++;
      // Read (and drop) the request body first, as a server would.
      req.resume();
      req.once('end', () => send(rules[index].answer, req, res, () => running));
      return;
    }
    if (upstream) return proxy(upstream, req, res);
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found","reason":"missing"}');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: async () => {
      running = false;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
