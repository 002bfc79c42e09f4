/**
 * What every section of `npm run bench` returns, and how the report is printed: each figure
 * next to its baseline measured in the same run, and their ratio.
 */
import { execFile } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { promisify } from 'node:util';
import { percentile as nearestRank } from '../coordinator/percentile.js';

const run = promisify(execFile);

export interface BenchRow {
  measure: string;
  value: string;
  baseline?: string;
  ratio?: string;
}

export interface BenchSection {
  title: string;
  /** The command that reproduces this section alone. */
  command: string;
  rows: BenchRow[];
  notes?: string[];
}

export interface Machine {
  cpu: string;
  cores: number;
  ram_gib: number;
  kernel: string;
  node: string;
  nats_server: string;
  sshd: string;
  slurm: string;
  /** 1-minute load average when the run started: above the core count, the figures are noisy. */
  load_at_start: number;
}

const benchStarted = performance.now();

/** A progress line on stderr (stdout carries only the report), with the seconds since the bench started. */
export function progress(section: string, message: string): void {
  process.stderr.write(`[bench ${((performance.now() - benchStarted) / 1000).toFixed(1).padStart(6)} s ${section}] ${message}\n`);
}

/** The value at percentile `p` (nearest rank) of `values`; NaN for none (a ratio of it reads n/a). */
export function percentile(values: readonly number[], p: number): number {
  return nearestRank(values, p) ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** `value / baseline` as `0.42×`; how to read it is said in each row's measure. */
export function ratio(value: number, baseline: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return 'n/a';
  const r = value / baseline;
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)}×`;
}

/** Milliseconds, readable from 1 ms to minutes. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${value.toFixed(0)} ms`;
}

/** The first line a program prints about its version, or why there is none. */
async function versionOf(program: string, args: string[], pattern: RegExp): Promise<string> {
  const outcome = await run(program, args, { timeout: 10_000 }).then(
    (r) => `${r.stdout}\n${r.stderr}`,
    (error: { stdout?: string; stderr?: string; code?: unknown }) =>
      error.stdout || error.stderr ? `${error.stdout ?? ''}\n${error.stderr ?? ''}` : `not available (${String(error.code)})`,
  );
  return pattern.exec(outcome)?.[0] ?? outcome.trim().split('\n')[0];
}

export async function describeMachine(): Promise<Machine> {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    ram_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    nats_server: await versionOf('nats-server', ['--version'], /v?\d+\.\d+\.\d+/),
    sshd: await versionOf('/usr/sbin/sshd', ['-V'], /OpenSSH_[^\s,]+/),
    slurm: await versionOf('/usr/sbin/slurmctld', ['-V'], /slurm[-\w]* [\d.]+/),
    load_at_start: Math.round(loadavg()[0] * 100) / 100,
  };
}

function table(rows: readonly BenchRow[]): string[] {
  const header: BenchRow = { measure: 'measure', value: 'value', baseline: 'baseline (same run)', ratio: 'ratio' };
  const all = [header, ...rows];
  const width = (key: keyof BenchRow) => Math.max(...all.map((r) => (r[key] ?? '').length));
  const w = { measure: width('measure'), value: width('value'), baseline: width('baseline'), ratio: width('ratio') };
  const line = (r: BenchRow) =>
    `  ${r.measure.padEnd(w.measure)}  ${r.value.padStart(w.value)}  ${(r.baseline ?? '').padEnd(w.baseline)}  ${(r.ratio ?? '').padStart(w.ratio)}`.trimEnd();
  return [line(header), `  ${'-'.repeat(w.measure + w.value + w.baseline + w.ratio + 6)}`, ...rows.map(line)];
}

/** The report as text: the machine, then each section with its table and notes. */
export function renderReport(machine: Machine, sections: readonly BenchSection[], started: Date, finished: Date): string {
  const lines = [
    `CouchMesh benchmark, ${started.toISOString()} (${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s)`,
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.ram_gib} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
    `         nats-server ${machine.nats_server}, ${machine.sshd}, ${machine.slurm}; load average at start ${machine.load_at_start}, at end ${(Math.round(loadavg()[0] * 100) / 100).toString()}`,
  ];
  for (const section of sections) {
    lines.push('', `== ${section.title}`, `   reproduce: ${section.command}`, ...table(section.rows));
    for (const note of section.notes ?? []) lines.push(`   - ${note}`);
  }
  return `${lines.join('\n')}\n`;
}
