/** The mesh configuration after validation: frozen, passed down, never re-read. */

export interface SiteConfig {
  readonly name: string;
  /** CouchDB URL this site's agents talk to, without credentials. */
  readonly server: string;
  /** Can other sites open connections to this site's server? */
  readonly reachable: boolean;
  /** May a process of this site live forever? */
  readonly long_running: boolean;
  /** Site whose credentials unlock `server` (defaults to the site itself). */
  readonly credentials_of: string;
  /** Where agents of this site write step logs. */
  readonly log_dir: string;
}

export interface StepConfig {
  readonly name: string;
  readonly site: string;
  /** Argument vector; each element a template ({file}, {out}, {doc_id}, {run_name}, {file_number}, {step}, {prev_out}). */
  readonly run: readonly string[];
  /** Template of the step's output path. */
  readonly out: string;
  readonly timeout_s: number;
  readonly max_attempts: number;
  readonly lease_s: number;
}

export interface IngestConfig {
  readonly site: string;
  /** Regular expression with named groups run_name and file_number, matched against the file's base name. */
  readonly pattern: string;
  readonly quiet_s: number;
}

export interface AgentTuning {
  /** How often agents re-query the ready views, in seconds (the safety net under the changes feed). */
  readonly sweep_s: number;
  /** How often an agent writes its heartbeat document, in seconds. */
  readonly heartbeat_s: number;
  /** First retry delay after a failed step, in seconds; doubles per attempt, with jitter. */
  readonly retry_base_s: number;
  readonly retry_cap_s: number;
  /** How long SIGTERM waits for running steps before releasing them, in seconds. */
  readonly grace_s: number;
}

export interface MeshConfig {
  readonly database: string;
  readonly doc_type: string;
  readonly sites: Readonly<Record<string, SiteConfig>>;
  readonly ingest: IngestConfig;
  readonly steps: readonly StepConfig[];
  readonly agent: AgentTuning;
  /** Where the config was read from, for messages. */
  readonly source: string;
}
