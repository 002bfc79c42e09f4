/**
 * What identifies one run of a step on its host, and the proof that an earlier run is gone
 * before a new one starts. A pid alone is not an identity (pids are reused): the process start
 * time (field 22 of /proc/<pid>/stat, clock ticks since boot) and the boot id tell a reused pid
 * and a rebooted host apart. The process group catches the run's descendants.
 */
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type DaqDocument, type RunIdentity, stepRecord } from '../core/document.js';
import { sleep } from '../core/sleep.js';

interface ProcStat {
  state: string;
  pgid: number;
  startTime: number;
}

/** Fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parentheses. */
function parseStat(text: string): ProcStat | undefined {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), fields[2] field 5 (pgrp), fields[19] field 22 (starttime).
  const pgid = Number(fields[2]);
  const startTime = Number(fields[19]);
  if (!fields[0] || !Number.isInteger(pgid) || !Number.isInteger(startTime)) return undefined;
  return { state: fields[0], pgid, startTime };
}

async function readStat(pid: number | string): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseStat(text);
}

/** A zombie (Z) or dead (X) entry runs nothing: it only waits for a parent that may never reap it. */
function running(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

let bootIdCache: Promise<string> | undefined;

/** This boot of the host (/proc/sys/kernel/random/boot_id), read once. */
export function bootId(): Promise<string> {
  bootIdCache ??= readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((text) => text.trim());
  return bootIdCache;
}

/** The identity of a process just started, or undefined when it has already gone. */
export async function identifyRun(pid: number, pgid: number): Promise<RunIdentity | undefined> {
  const [stat, boot] = await Promise.all([readStat(pid), bootId()]);
  if (!running(stat)) return undefined;
  return { host: hostname(), pid, pgid, start_time: stat.startTime, boot_id: boot };
}

/** Pids of the processes of group `pgid` that still run (zombies excluded). */
export async function groupMembers(pgid: number): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readStat(entry);
    if (running(stat) && stat.pgid === pgid) members.push(Number(entry));
  }
  return members;
}

/** Whether any process, zombies included, is in group `pgid` (one system call; the /proc scan only when it is). */
function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What still runs of `run` on this host: its leader (same pid, same start, same boot) and its group's members. */
export async function remainsOf(run: RunIdentity): Promise<number[]> {
  if (run.boot_id !== (await bootId())) return [];
  const left = new Set(groupExists(run.pgid) ? await groupMembers(run.pgid) : []);
  const leader = await readStat(run.pid);
  if (running(leader) && leader.startTime === run.start_time) left.add(run.pid);
  return [...left];
}

export type RunGone = { gone: true; killed: number } | { gone: false; reason: string };

const POLL_MS = 20;

function kill(pid: number): string | undefined {
  try {
    process.kill(pid, 'SIGKILL');
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ESRCH' ? undefined : `kill ${pid}: ${code ?? String(error)}`;
  }
}

/**
 * Makes sure the earlier run recorded in a claim runs no more before its step starts again:
 * on this host (same boot), SIGKILL its group and its leader, then wait (at most `timeoutMs`)
 * until nothing of it runs. A run recorded by another host, or before a reboot, is not ours
 * to check: `gone` (its own host's supervisor and parent-death signal ended it).
 */
export async function ensureRunGone(run: RunIdentity | undefined, timeoutMs = 2000): Promise<RunGone> {
  if (!run || run.host !== hostname()) return { gone: true, killed: 0 };
  const deadline = Date.now() + timeoutMs;
  let killed = 0;
  let refused: string | undefined;
  for (let round = 0; round < Math.ceil(timeoutMs / POLL_MS) + 1; round++) {
    const left = await remainsOf(run);
    if (left.length === 0) return { gone: true, killed };
    if (round === 0) killed = left.length;
    // The group first (descendants), then each member: one may have left the group's signal behind.
    refused = kill(-run.pgid) ?? refused;
    for (const pid of left) refused = kill(pid) ?? refused;
    if (Date.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  const left = await remainsOf(run);
  if (left.length === 0) return { gone: true, killed };
  return {
    gone: false,
    reason: `the earlier run (pid ${run.pid}, process group ${run.pgid}) still has process(es) ${left.join(', ')} after ${timeoutMs} ms of SIGKILL${refused ? ` (${refused})` : ''}`,
  };
}

/**
 * The host-local record of a run: written right after the spawn next to the run's log files
 * (`<log_dir>/<doc>/<step>.<attempt>.run`), removed once the run is over. It keeps the promise
 * of the identity in the document (an agent taking the claim over on this host kills what the
 * earlier run left, even when that run's agent and supervisor were both killed) for runs that
 * end, or die, before their first lease renewal carries the identity into the document: a short
 * step costs no database write for it. The file names the document and the step in full (log
 * folder names are sanitised and may collide), and the run names its host and boot, so a record
 * read from a shared log folder by another host, or after a reboot, is never acted upon.
 */
export interface LocalRun {
  doc: string;
  step: string;
  attempt: number;
  run: RunIdentity;
}

const RECORD_SUFFIX = '.run';

/** The record's path for a run whose log files are `<logBase>.out` and `<logBase>.err`. */
export function localRunPath(logBase: string): string {
  return `${logBase}${RECORD_SUFFIX}`;
}

/** Written whole or not at all (a temporary file renamed), so a reader never sees half a record. */
export async function writeLocalRun(path: string, record: LocalRun): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(temporary, path);
}

export async function removeLocalRun(path: string): Promise<void> {
  await rm(path, { force: true });
}

function isLocalRun(value: unknown): value is LocalRun {
  const v = value as LocalRun | null;
  const run = v?.run;
  return (
    typeof v?.doc === 'string' &&
    typeof v.step === 'string' &&
    Number.isInteger(v.attempt) &&
    typeof run === 'object' &&
    run !== null &&
    typeof run.host === 'string' &&
    Number.isInteger(run.pid) &&
    Number.isInteger(run.pgid) &&
    run.pgid > 1 &&
    Number.isInteger(run.start_time) &&
    typeof run.boot_id === 'string'
  );
}

function parseRecord(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Records in `dir` of runs of (`doc`, `step`) with an attempt before `attempt`: what an earlier claim on this host may have left. */
export async function earlierLocalRuns(dir: string, doc: string, step: string, attempt: number): Promise<Array<{ path: string; record: LocalRun }>> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const found: Array<{ path: string; record: LocalRun }> = [];
  for (const name of names) {
    if (!name.startsWith(`${step}.`) || !name.endsWith(RECORD_SUFFIX)) continue;
    const number = name.slice(step.length + 1, -RECORD_SUFFIX.length);
    if (!/^\d+$/.test(number) || Number(number) >= attempt) continue;
    const path = join(dir, name);
    const record = parseRecord(await readFile(path, 'utf8').catch(() => ''));
    if (isLocalRun(record) && record.doc === doc && record.step === step && record.attempt === Number(number)) found.push({ path, record });
  }
  return found;
}

/**
 * Before attempt `attempt` of (`doc`, `step`) starts here: every earlier run recorded in `dir`
 * on this host runs no more (ensureRunGone), and its record is removed. `gone: false` when one
 * still runs after the SIGKILLs; its record is kept for the next try.
 */
export async function ensureEarlierLocalRunsGone(
  dir: string,
  doc: string,
  step: string,
  attempt: number,
  timeoutMs = 2000,
): Promise<RunGone & { attempts: number[] }> {
  let killed = 0;
  const attempts: number[] = [];
  for (const { path, record } of await earlierLocalRuns(dir, doc, step, attempt)) {
    const earlier = await ensureRunGone(record.run, timeoutMs);
    if (!earlier.gone) return { ...earlier, reason: `attempt ${record.attempt}: ${earlier.reason}`, attempts: [record.attempt] };
    if (earlier.killed > 0) attempts.push(record.attempt);
    killed += earlier.killed;
    await removeLocalRun(path);
  }
  return { gone: true, killed, attempts };
}

/**
 * Before claiming `step` of `doc` (as seen): the earlier run its record names (the first
 * renewal wrote it) and every earlier run recorded on this host in `dir` (the document's run
 * folder, step-job.ts `runFolder`) run no more. The claim will be attempt `attempts + 1`.
 */
export async function ensureEarlierRunsGone(dir: string, doc: DaqDocument, step: string, timeoutMs = 2000): Promise<RunGone> {
  const record = stepRecord(doc, step);
  const named = await ensureRunGone(record?.run, timeoutMs);
  if (!named.gone) return named;
  const local = await ensureEarlierLocalRunsGone(dir, doc._id, step, (record?.attempts ?? 0) + 1, timeoutMs);
  if (!local.gone) return { gone: false, reason: local.reason };
  return { gone: true, killed: named.killed + local.killed };
}
