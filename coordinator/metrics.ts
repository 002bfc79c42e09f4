// PLACEHOLDER until wt-flow merges: the signature the status page is written against.
import type { MeshConfig } from '../config/types.js';
import type { OpenDatabase } from './servers.js';

export async function metricsText(config: MeshConfig, open: OpenDatabase, now = new Date()): Promise<{ contentType: string; body: string }> {
  void config;
  void open;
  return { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: `# placeholder metrics at ${now.toISOString()}\n` };
}
