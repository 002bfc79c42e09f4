/**
 * Test aids for the status page: `mesh dashboard` as a child process (its URL from the line it
 * prints), and a recorder of every HTTP and WebSocket payload a test receives, so a test can
 * check that no credential ever reaches the browser.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { meshMain, repoRoot } from './server-process.js';

export interface DashboardProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Starts `mesh --config FILE dashboard --port 0` and waits for the URL it prints. */
export async function startDashboardProcess(configFile: string, env: NodeJS.ProcessEnv): Promise<DashboardProcess> {
  const child = spawn(process.execPath, [meshMain, '--config', configFile, 'dashboard', '--port', '0'], {
    cwd: repoRoot,
    env: { ...process.env, MESH_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh dashboard printed no URL within 20 s:\n${log.join('')}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      log.push(`${line}\n`);
      const match = /^mesh dashboard: (http:\/\/\S+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mesh dashboard exited with status ${code}:\n${log.join('')}`));
    });
  });
  return {
    url,
    child,
    output: () => log.join(''),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Every payload received, in order: response bodies, headers, WebSocket messages. */
export class PayloadRecorder {
  readonly payloads: string[] = [];

  constructor(private readonly base: string) {}

  async fetch(path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; text: string; headers: Headers }> {
    const res = await fetch(new URL(path, this.base), init);
    const text = await res.text();
    this.payloads.push(JSON.stringify([...res.headers]), text);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON (a page, /metrics)
    }
    return { status: res.status, body, text, headers: res.headers };
  }

  /** A WebSocket to `/live` whose messages are recorded and handed to `onMessage` as parsed JSON. */
  socket(onMessage: (message: { type: string; snapshot: Record<string, unknown> }, at: number) => void, headers: Record<string, string> = {}): WebSocket {
    const ws = new WebSocket(new URL('/live', this.base.replace(/^http/, 'ws')), { headers });
    ws.on('message', (data) => {
      const text = data.toString();
      this.payloads.push(text);
      onMessage(JSON.parse(text) as { type: string; snapshot: Record<string, unknown> }, Date.now());
    });
    return ws;
  }

  leaks(user: string, secret: string): string[] {
    return credentialLeaks(this.payloads, user, secret);
  }
}

/** The texts that contain `secret` (as it is, URL-encoded, or in a Basic-auth header with `user`). */
export function credentialLeaks(texts: string[], user: string, secret: string): string[] {
  const forms = [secret, Buffer.from(`${user}:${secret}`).toString('base64'), encodeURIComponent(secret)];
  return texts.filter((text) => forms.some((form) => text.includes(form)));
}
