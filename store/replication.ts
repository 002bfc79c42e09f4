/**
 * Replication jobs as the servers keep them: `_replicator` documents (created, deleted,
 * recreated) and CouchDB 3's `/_scheduler/docs` view of them. Which jobs must exist and when to
 * restart one is coordinator/replication.ts's business; this file only talks to the servers.
 */
import { MeshError, isMeshError } from '../core/errors.js';
import type { Database } from './database.js';

export type Endpoint = string | { url: string; headers: { Authorization: string } };

export interface ReplicatorDocument {
  _id: string;
  _rev?: string;
  source: Endpoint;
  target: Endpoint;
  continuous: true;
  [field: string]: unknown;
}

/** A job's state as the server reports it, with the reason of an error state when it gives one. */
export interface JobState {
  /** CouchDB scheduler states (running, pending, crashing, error, failed, completed), or `ignored` (see below). */
  state: string;
  /** Why the job is in an error state (e.g. `replication_auth_error`, a connection refusal), as the server words it. */
  reason?: string;
  /** CouchDB's `changes_pending` (cached up to 30 s by CouchDB, often null); null when not given. */
  pending: number | null;
}

interface SchedulerDoc {
  state?: unknown;
  info?: { changes_pending?: unknown; error?: unknown } | null;
  error_count?: unknown;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0) return value;
  if (value !== null && typeof value === 'object') return JSON.stringify(value).slice(0, 300);
  return undefined;
}

/**
 * The job's state from `GET /_scheduler/docs/_replicator/<id>` (the server must have that
 * endpoint: store/capabilities.ts). A job written a moment ago may not be scheduled yet: `pending`.
 */
export async function schedulerState(server: Database, id: string): Promise<JobState> {
  let scheduled: SchedulerDoc | undefined;
  try {
    scheduled = await server.request<SchedulerDoc>('replication scheduler', { path: `_scheduler/docs/_replicator/${encodeURIComponent(id)}` });
  } catch (error) {
    if (!isMeshError(error, 'NOT_FOUND')) throw error;
  }
  const state = typeof scheduled?.state === 'string' ? scheduled.state : 'pending';
  const pending = scheduled?.info?.changes_pending;
  const reason = text(scheduled?.info?.error);
  return { state, pending: typeof pending === 'number' ? pending : null, ...(reason ? { reason } : {}) };
}

/**
 * The job's state from the fields the replicator writes into its `_replicator` document
 * (`_replication_state`, `_replication_state_reason`), for servers without `/_scheduler/docs`.
 * `triggered` reads `running`; `_replication_id` without a state means the replicator took the
 * job for a duplicate of another and will never run it: `ignored`.
 */
export function documentState(doc: ReplicatorDocument): JobState {
  const field = doc._replication_state;
  const state = field === 'triggered' ? 'running' : typeof field === 'string' ? field : doc._replication_id ? 'ignored' : 'pending';
  const reason = state === 'running' ? undefined : text(doc._replication_state_reason);
  return { state, pending: null, ...(reason ? { reason } : {}) };
}

export async function readJob(replicator: Database, id: string): Promise<ReplicatorDocument | undefined> {
  return replicator.get<ReplicatorDocument>(id);
}

/** Creates `_replicator` if needed, then the job. */
export async function createJob(replicator: Database, doc: ReplicatorDocument): Promise<void> {
  await replicator.ensure();
  await replicator.put({ ...doc });
}

export async function removeJob(replicator: Database, id: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await replicator.get<{ _rev: string }>(id);
    if (!current) return;
    // The embedded replicator writes its state into the document right after our write: a conflict means "read again".
    const [row] = await replicator.bulk([{ _id: id, _rev: current._rev, _deleted: true }]);
    if (row?.error === 'conflict') continue;
    if (row?.error) throw new MeshError('SERVER_ERROR', `deleting replication job ${id}: ${row.error} ${row.reason ?? ''}`.trim());
    return;
  }
  throw new MeshError('CONFLICT', `replication job ${id} kept changing while it was being deleted`);
}

/** Deletes and recreates a job: the documented way to restart a replication (a triggered job cannot be edited). */
export async function recreateJob(replicator: Database, wanted: ReplicatorDocument): Promise<void> {
  await removeJob(replicator, wanted._id);
  await replicator.put({ ...wanted });
}
