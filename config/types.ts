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
  /** Steps this site is able to run (the assignment may only give it these). */
  readonly may_run: readonly string[];
  /** How other sites reach this one over SSH (key authentication, pinned host key). */
  readonly ssh?: SshTarget;
  /** The batch system that runs this site's steps, when it has one. */
  readonly batch?: BatchConfig;
  /** Root of this site's data storage (where transfers to it land). */
  readonly storage?: string;
  /** How to run `mesh` (with its config) on this site's machines, as an argument vector: the trigger runs `<mesh> agent --site S --once` there. */
  readonly mesh: readonly string[];
}

export interface SshTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Private key file of the connecting side. */
  readonly identity_file: string;
  /** The server's host key, pinned: `SHA256:<base64>` as `ssh-keygen -lf` prints it. */
  readonly host_key_sha256: string;
}

export interface BatchConfig {
  readonly system: 'slurm' | 'sge';
  /** Extra submission options, e.g. ["--partition=short"]. */
  readonly options: readonly string[];
  /** Documents handled by one batch job (the original scripts grouped up to 100). */
  readonly docs_per_job: number;
  /** The `mesh` command on the batch nodes, as an argument vector. */
  readonly mesh: readonly string[];
  /** At most this many of the site's jobs queued or running at once; undefined: no limit. */
  readonly max_jobs?: number;
  /** What the scheduler kills a job at, in seconds (`batch.walltime`, or read from `options`); undefined: not known. */
  readonly walltime_s?: number;
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
  /** `command` runs `run`; `sftp` is the built-in transfer of {file} to site `to`'s storage. */
  readonly executor: 'command' | 'sftp';
  /** Destination site of an `sftp` step; for a `command` step that writes into another site's storage, that site (it holds a custody copy). */
  readonly to?: string;
  /**
   * The step makes a verified copy of the raw file: the site holding it (`to`, else the site that
   * ran it) re-reads its output `file` and records it in `custody[]`, which `mesh purge` counts. A run
   * step's copy is its archive of the run's members, read back and recorded on the run document.
   */
  readonly custody?: boolean;
  /** `run`: once per run, on the run document, after every member has done `after` (config/run-steps.ts). Default `file`. */
  readonly scope?: 'file' | 'run';
  /** A run step: the file step every member of the run must have done first. */
  readonly after?: string;
  /**
   * The step program's version: every record the step makes stores it, and `mesh reprocess`
   * re-runs the step where its record is older (natural order: 1.10 is after 1.9; none is oldest).
   */
  readonly version?: string;
}

export interface NatsConfig {
  readonly url: string;
}

export interface CoordinatorConfig {
  /** The site whose machine runs the coordinator (it must be able to reach every server). */
  readonly site: string;
  readonly interval_s: number;
}

export interface IngestConfig {
  readonly site: string;
  /** Regular expression with named groups run_name and file_number, matched against the file's base name. */
  readonly pattern: string;
  readonly quiet_s: number;
  /** A run is closed when no new file of it was catalogued for this many seconds (or a `<run_name>.closed` marker exists); run steps wait for it. */
  readonly run_quiet_s?: number;
  /**
   * Optional program (argument vector, no shell; templates {file}, {run_name}, {file_number},
   * {doc_id}) run once per new file, printing one JSON object of header fields for its document.
   */
  readonly metadata?: readonly string[];
  /** A metadata program still running after this many seconds is killed, with its process group (the loader fills the default). */
  readonly metadata_timeout_s?: number;
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

export interface AlertsConfig {
  /** An agent whose heartbeat (state not `stopped`) is older than this many seconds is reported silent. */
  readonly agent_silent_s: number;
  /** The window, in seconds, over which finished files are checked against the latency targets. */
  readonly window_s: number;
  /** Optional command (argument vector, no shell) started for each new and each cleared alert, the alert as JSON on stdin. */
  readonly hook?: readonly string[];
  /** A hook still running after this many seconds is killed. */
  readonly hook_timeout_s: number;
  /** A step whose ready documents nothing has claimed for this many seconds is reported stalled. */
  readonly stalled_s: number;
  /** A site whose last this-many triggered runs (or batch jobs) ended badly is reported failing. */
  readonly failing_runs: number;
  /** A site holding claims in flight while none of its agents was heard from for this many seconds is reported. */
  readonly unheard_s: number;
  /** A replication link more than this many seconds behind (coordinator/freshness.ts) is reported. */
  readonly replication_behind_s: number;
  /** The DAQ buffer's free space (bytes) below which an alert is raised; undefined: no such alert. */
  readonly daq_free_min?: number;
}

export interface MeshConfig {
  readonly database: string;
  readonly doc_type: string;
  /** The original Edelweiss scripts' design document is `_design/<original_design>` (`proc`). */
  readonly original_design: string;
  readonly sites: Readonly<Record<string, SiteConfig>>;
  readonly ingest: IngestConfig;
  /** The file pipeline: the steps of `scope: "file"`, in order. */
  readonly steps: readonly StepConfig[];
  /** The run pipeline: the steps of `scope: "run"`, in order, each run once per run document (core/run-document.ts). */
  readonly run_steps?: readonly StepConfig[];
  readonly agent: AgentTuning;
  /** Optional: wake-up hints and a cross-site claim registry. Everything works without it. */
  readonly nats?: NatsConfig;
  readonly coordinator: CoordinatorConfig;
  /**
   * Latency targets, step → seconds: a file should have that step done within this time of its
   * DAQ close (`date_closed`). Steps without a target have none.
   */
  readonly targets: Readonly<Record<string, number>>;
  readonly alerts: AlertsConfig;
  /** Seconds one request to a server may take, answer included (a server that never finishes is a failure). */
  readonly server_timeout_s: number;
  /** Largest answer read from a server, in MiB (a longer one is refused, never held). */
  readonly server_max_answer_mib: number;
  /** Where the config was read from, for messages. */
  readonly source: string;
}
