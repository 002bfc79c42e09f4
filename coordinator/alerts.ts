// PLACEHOLDER until wt-flow merges: the signature the status page is written against; no alerts.
import type { MeshConfig } from '../config/types.js';
import type { FlowStatus } from './flow.js';
import type { MeshStatus } from './status.js';

export interface Alert {
  kind: 'latency_target' | 'agent_silent' | string;
  key: string;
  message: string;
  since: string;
}

export function evaluateAlerts(config: MeshConfig, status: MeshStatus, flow: FlowStatus, now: Date): Alert[] {
  void config;
  void status;
  void flow;
  void now;
  return [];
}
