import { chmod, readFile, writeFile } from 'node:fs/promises';
import { MeshError, errorMessage } from '../../core/errors.js';

/**
 * What one batch job does, written by the submitter next to the job's logs (mode 0600) and
 * read by `mesh run-batch`. Document ids are data here, never part of the job script.
 */
export interface BatchJobFile {
  version: 1;
  site: string;
  step: string;
  /** The job's stdout path: identifies the job in the documents before its id is known. */
  stdout: string;
  stderr: string;
  docs: string[];
  /** The walltime the job was submitted with: a document is started only while its whole `timeout_s` still fits. */
  walltime_s?: number;
  /** Set when the submitter's credentials come from a password file: the job reads the same file. */
  credentials?: { user: string; password_file: string };
}

export async function writeJobFile(path: string, job: BatchJobFile): Promise<void> {
  await writeFile(path, `${JSON.stringify(job, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
}

export async function readJobFile(path: string): Promise<BatchJobFile> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new MeshError('BAD_INPUT', `cannot read the batch job file ${path}: ${errorMessage(cause)}`, { cause });
  }
  const job = raw as Partial<BatchJobFile> | null;
  const problems: string[] = [];
  if (!job || typeof job !== 'object') problems.push('not a JSON object');
  else {
    if (job.version !== 1) problems.push(`version is ${JSON.stringify(job.version)}, expected 1`);
    for (const key of ['site', 'step', 'stdout', 'stderr'] as const)
      if (typeof job[key] !== 'string' || !job[key]) problems.push(`${key} is not a non-empty string`);
    if (!Array.isArray(job.docs) || !job.docs.every((d) => typeof d === 'string')) problems.push('docs is not a list of document ids');
    if (job.walltime_s !== undefined && !(typeof job.walltime_s === 'number' && job.walltime_s > 0)) problems.push('walltime_s is not a positive number');
    const c = job.credentials;
    if (c !== undefined && (typeof c !== 'object' || c === null || typeof c.user !== 'string' || typeof c.password_file !== 'string'))
      problems.push('credentials is not { user, password_file }');
  }
  if (problems.length > 0) throw new MeshError('BAD_INPUT', `batch job file ${path}: ${problems.join('; ')}`);
  return job as BatchJobFile;
}

/** Quotes one word for /bin/sh: the script holds nothing but fixed, quoted words. */
export function shellQuote(word: string): string {
  if (word.includes('\0')) throw new MeshError('BAD_INPUT', 'a NUL byte cannot be passed to a batch job');
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The job script: exec the mesh command with fixed arguments (paths and names from the config, never from documents). */
export function jobScript(argv: readonly string[]): string {
  return ['#!/bin/sh', '# CouchMesh batch job (generated): the documents are listed in the job file.', `exec ${argv.map(shellQuote).join(' ')}`, ''].join('\n');
}

export async function writeJobScript(path: string, argv: readonly string[]): Promise<void> {
  await writeFile(path, jobScript(argv), { mode: 0o700, flag: 'wx' });
  await chmod(path, 0o700);
}
