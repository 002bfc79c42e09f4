/** What an alert is: its kind, a key stable while the condition lasts, what it says and what to do about it. */

/** Every kind of alert (`/metrics` reports each, 0 when none holds). */
export const ALERT_KINDS = Object.freeze([
  'latency_target',
  'agent_silent',
  'step_stalled',
  'site_failing',
  'site_unheard',
  'replication_behind',
  'daq_buffer_low',
] as const);

export type AlertKind = (typeof ALERT_KINDS)[number];

export interface Alert {
  kind: AlertKind;
  /** Stable while the condition lasts: `latency_target:proc1`, `agent_silent:lyon/lyon-7`, `step_stalled:proc1`. */
  key: string;
  message: string;
  /** What to do about it, for the shift crew. */
  action: string;
  /** When the condition started (ISO date). */
  since: string;
}
