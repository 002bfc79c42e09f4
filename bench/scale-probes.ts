/**
 * Instruments of the scale benchmark: a recording HTTP proxy (what an agent asks the server,
 * and how big each answer is), the resident memory of a process, and timed runs of the CLI.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Agent, type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MESH_MAIN } from '../cli/processes.js';

export interface RecordedRequest {
  at_ms: number;
  method: string;
  path: string;
  status: number;
  response_bytes: number;
}

/**
 * Forwards every request to `target` and records it. `firstWrite` resolves at the first request
 * whose body matches `claimPattern` (a claim), with the time since `start()`.
 */
export class RecordingProxy {
  readonly requests: RecordedRequest[] = [];
  private server?: Server;
  private t0 = performance.now();
  private claimed?: (ms: number) => void;
  readonly firstClaim: Promise<number>;
  private readonly upstream = new Agent({ keepAlive: true });

  constructor(
    private readonly target: URL,
    private readonly claimPattern: RegExp,
  ) {
    this.firstClaim = new Promise((resolve) => (this.claimed = resolve));
  }

  async listen(): Promise<string> {
    this.server = createServer((req, res) => this.forward(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The zero of the timeline: the moment the agent is spawned. */
  start(): void {
    this.t0 = performance.now();
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const at = performance.now() - this.t0;
      const entry: RecordedRequest = { at_ms: Math.round(at), method: req.method ?? 'GET', path: req.url ?? '', status: 0, response_bytes: 0 };
      this.requests.push(entry);
      if (req.method !== 'GET' && this.claimPattern.test(body.toString('utf8'))) this.claimed?.(at);
      // A proxy forwarding the agent's own requests: not a database client of its own.
      const upstream = request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: this.target.host },
          agent: this.upstream,
        },
        (answer) => {
          entry.status = answer.statusCode ?? 0;
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.on('data', (c: Buffer) => (entry.response_bytes += c.length));
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      upstream.end(body);
    });
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.upstream.destroy();
  }
}

/** Resident set size of a process in MiB (VmRSS), or undefined once it is gone. */
export async function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1];
  return kb === undefined ? undefined : Number(kb) / 1024;
}

/** Runs `mesh ARGS` to completion: wall time (process start to exit), exit status and stdout. */
export function timeMesh(args: string[], timeoutMs = 900_000): Promise<{ ms: number; status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [MESH_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESH_LOG_LEVEL: 'warn' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, status, stdout, stderr });
    });
  });
}
