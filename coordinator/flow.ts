// PLACEHOLDER until wt-flow merges: the signature the status page is written against; no data.
import type { MeshConfig } from '../config/types.js';
import type { Database } from '../core/couch.js';

export interface FlowStatus {
  window_s: number;
  completed: Record<string, Array<{ hour: string; count: number }>>;
  latency: Array<{ stage: string; from: string; p50_s: number | null; p95_s: number | null; count: number; target_s: number | null; late: Array<{ doc: string; run: string; file: number; latency_s: number; done: boolean }> }>;
}

export async function flowStatus(config: MeshConfig, db: Database, options: { now: Date; windowMs: number; hours: number }): Promise<FlowStatus> {
  void config;
  void db;
  return { window_s: Math.round(options.windowMs / 1000), completed: {}, latency: [] };
}
