/**
 * The run document: one per DAQ run (`runinfo_<run_name>`, `type: "daqrun"`), written by the
 * ingest site as it catalogues the run's files, and the data document of the run pipeline (the
 * steps of `"scope": "run"`). Its step records, status and history follow the same state
 * machine as a file document's (core/state.ts, with the run steps as the pipeline): it starts
 * `closed`, a run step in progress is `<step> in progress`, done ones make it `good`.
 *
 * A run step is ready when the document is ready for it by the state machine, the run is closed
 * (`closed_at`: no new file for `ingest.run_quiet_s`, or a `<run_name>.closed` marker), and every
 * member has done the step's `after` (which only the agent can check: it reads the members).
 */
import type { CustodyRecord } from './custody.js';
import { type DaqDocument, type HistoryEntry, type StepRecord, isDone, stepRecord } from './document.js';
import { type PipelineSteps, readyFor } from './state.js';

export const RUN_DOC_TYPE = 'daqrun';
export const RUN_ID_PREFIX = 'runinfo_';

/** One file of the run, as the ingest catalogued it. */
export interface RunMember {
  doc_id: string;
  file: string;
  size_in_bytes: number;
  sha256: string;
}

/** A run step's custody record: a file's (core/custody.ts), with the members it verified in the copy. */
export type RunCustody = CustodyRecord & Required<Pick<CustodyRecord, 'members'>>;

export interface RunDocument {
  _id: string;
  _rev?: string;
  _conflicts?: string[];
  type: typeof RUN_DOC_TYPE;
  status: string;
  history: HistoryEntry[];
  /** Records of the run steps not done yet; done ones are top-level fields named after the step. */
  pending?: Record<string, StepRecord>;
  run_name: string;
  /** Append-only, written by the ingest site: the files of the run before a run step started. */
  members: RunMember[];
  /** Append-only: files catalogued after a run step had started (reported, not archived by it). */
  late_members?: RunMember[];
  /** When the newest member was catalogued (the run's quiet time counts from it). */
  last_member_at?: string;
  /** Written once by the ingest site. */
  closed_at?: string;
  closed_by?: 'quiet' | 'marker';
  custody?: RunCustody[];
  [field: string]: unknown;
}

export function runDocumentId(runName: string): string {
  return `${RUN_ID_PREFIX}${runName}`;
}

export function isRunDocument(doc: unknown): doc is RunDocument {
  return doc !== null && typeof doc === 'object' && (doc as { type?: unknown }).type === RUN_DOC_TYPE;
}

/** The state machine's view of a run document (the same fields it reads of a file document). */
export function asStateDocument(doc: RunDocument): DaqDocument {
  return doc as unknown as DaqDocument;
}

/** Whether any run step has a record (claimed, failed or done): from then on a new file is a late member. */
export function runStepStarted(doc: RunDocument, runSteps: readonly string[]): boolean {
  return runSteps.some((step) => stepRecord(asStateDocument(doc), step) !== undefined);
}

/** A new run document: `closed` (nothing run yet) with its first member, from the ingest site. */
export function newRunDocument(runName: string, member: RunMember, at: string, by: string, user: string | null): RunDocument {
  return {
    _id: runDocumentId(runName),
    type: RUN_DOC_TYPE,
    run_name: runName,
    members: [member],
    last_member_at: at,
    status: 'closed',
    history: [{ at, from: null, to: 'closed', by, user }],
  };
}

/** The run document with `member` appended where it belongs; unchanged (same object) when it is listed already. */
export function withMember(doc: RunDocument, member: RunMember, runSteps: readonly string[], at: string): { doc: RunDocument; late: boolean } {
  const listed = [...doc.members, ...(doc.late_members ?? [])].some((m) => m.doc_id === member.doc_id);
  if (listed) return { doc, late: false };
  if (runStepStarted(doc, runSteps)) return { doc: { ...doc, late_members: [...(doc.late_members ?? []), member] }, late: true };
  return { doc: { ...doc, members: [...doc.members, member], last_member_at: at }, late: false };
}

/** Why the run is closed at `now`, or undefined while it is open. */
export function closedBecause(doc: RunDocument, quietS: number, marker: boolean, now: Date): 'quiet' | 'marker' | undefined {
  if (marker) return 'marker';
  const last = Date.parse(doc.last_member_at ?? '');
  return Number.isFinite(last) && now.getTime() - last >= quietS * 1000 ? 'quiet' : undefined;
}

/** The run step the document is ready for at `now` (closed, ready by the state machine), if any. */
export function runReadyFor(doc: RunDocument, pipeline: PipelineSteps, now: Date): string | undefined {
  if (doc.closed_at === undefined) return undefined;
  return readyFor(asStateDocument(doc), pipeline, now);
}

/** Members whose `after` step is not done (from the member documents read; a missing one counts as not done). */
export function membersNotDone(members: readonly RunMember[], documents: ReadonlyMap<string, DaqDocument>, after: string): string[] {
  return members
    .filter((m) => {
      const doc = documents.get(m.doc_id);
      return doc === undefined || !isDone(doc, after);
    })
    .map((m) => m.doc_id);
}
