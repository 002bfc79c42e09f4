/**
 * `npm run bench`: every figure next to its baseline measured in the same run on this machine,
 * and their ratio. Progress goes to stderr, the report to stdout (`--json`: one JSON object).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { type BenchSection, describeMachine, progress, renderReport } from './report.js';
import { Interrupted } from './wait.js';
import { MeshError } from '../core/errors.js';

const SECTIONS = ['pipeline', 'validate', 'latency', 'sftp', 'page', 'scale'] as const;
type SectionName = (typeof SECTIONS)[number];

interface BenchOptions {
  only?: SectionName[];
  quick: boolean;
  json: boolean;
  pageDocs: number;
  scaleDocs: number;
  scaleBacklog: number;
  scaleData?: string;
  skipScale: boolean;
  server?: string;
}

function sectionList(text: string, previous: SectionName[] = []): SectionName[] {
  const names = text.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown section ${unknown.join(', ')}; the sections are ${SECTIONS.join(', ')}`);
  return [...previous, ...(names as SectionName[])];
}

function documentCount(text: string): number {
  const value = Number(text.replace(/[_,]/g, ''));
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`"${text}" is not a positive number of documents`);
  return value;
}

function serverUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError(`"${text}" is not a URL such as http://127.0.0.1:5984`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`"${url.protocol}" is not http: or https:`);
  if (url.username || url.password)
    throw new InvalidArgumentError('put no credentials in the URL: set COUCHDB_USER and COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE)');
  return text.replace(/\/+$/, '');
}

/** The 1M-document section (bench/scale.ts). */
async function scaleSection(options: BenchOptions): Promise<BenchSection> {
  const docs = options.quick ? Math.min(options.scaleDocs, 10_000) : options.scaleDocs;
  const command = `node dist/bench/main.js --only scale --scale-docs ${options.scaleDocs} --scale-backlog ${options.scaleBacklog}${options.quick ? ' --quick' : ''}`;
  const title = `scale: ${docs.toLocaleString('en-US')} documents in one embedded database`;
  const { runScale } = await import('./scale.js');
  const result = await runScale({
    docs,
    backlog: options.quick ? Math.min(options.scaleBacklog, 1000) : options.scaleBacklog,
    ...(options.scaleData ? { dataDir: options.scaleData } : {}),
    log: (line) => progress('scale', line),
  });
  return { title, command, rows: result.rows };
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('bench')
    .description('CouchMesh benchmark: each figure with its baseline from the same run, and the ratio')
    .option('--only <sections>', `run only these sections (comma-separated, repeatable): ${SECTIONS.join(', ')}`, sectionList)
    .option('--quick', 'tiny sizes and no Slurm: shows that every section runs, the figures mean little', false)
    .option('--json', 'print the report as one JSON object instead of tables', false)
    .option('--page-docs <n>', "documents of the page section's database (with --quick at most 500)", documentCount, 100_000)
    .option('--scale-docs <n>', "documents in the scale section's database (with --quick at most 10,000)", documentCount, 1_000_000)
    .option(
      '--scale-backlog <n>',
      'ready documents the agent catches up on in the scale section (a /bin/true step; 100,000 take about 8 minutes on 2 cores)',
      documentCount,
      100_000,
    )
    .option('--scale-data <dir>', "keep the scale section's data set in DIR and reuse it in later runs with the same sizes")
    .option('--skip-scale', 'leave out the scale section (it takes the longest)', false)
    .option(
      '--server <url>',
      'run the pipeline section against this CouchDB-compatible server instead of a new embedded one (its own uniquely named databases, deleted at the end; credentials from COUCHDB_USER and COUCHDB_PASSWORD or COUCHDB_PASSWORD_FILE); the other sections still start their own servers',
      serverUrl,
    )
    .showHelpAfterError()
    .exitOverride()
    .parse(argv);
  const options = program.opts<BenchOptions>();
  const wanted = (name: SectionName) => (options.only ? options.only.includes(name) : name !== 'scale' || !options.skipScale);
  // First SIGINT/SIGTERM: the running section stops waiting and stops what it started; second: exit now.
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) process.exit(130);
    progress('bench', `${signal}: stopping what the running section started (again to exit at once)`);
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const signal = interrupt.signal;
  // Each section's modules are loaded when it runs: a refused option costs no more than parsing it.
  const runners: Record<SectionName, () => Promise<BenchSection>> = {
    pipeline: async () => (await import('./pipeline.js')).runPipeline({ quick: options.quick, signal, ...(options.server ? { server: options.server } : {}) }),
    latency: async () => (await import('./latency.js')).runLatency({ quick: options.quick, signal }),
    validate: async () => (await import('./validate.js')).runValidate({ quick: options.quick }),
    sftp: async () => (await import('./sftp.js')).runSftp({ quick: options.quick, signal }),
    page: async () => (await import('./page.js')).runPage({ docs: options.pageDocs, quick: options.quick, signal }),
    scale: () => scaleSection(options),
  };
  const started = new Date();
  const machine = await describeMachine();
  const sections: BenchSection[] = [];
  for (const name of SECTIONS.filter(wanted)) {
    const t0 = performance.now();
    progress(name, 'started');
    sections.push(await runners[name]());
    progress(name, `done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const finished = new Date();
  if (options.json) process.stdout.write(`${JSON.stringify({ started: started.toISOString(), finished: finished.toISOString(), machine, sections })}\n`);
  else process.stdout.write(renderReport(machine, sections, started, finished));
}

try {
  await main(process.argv);
} catch (error) {
  // Help ends well; a usage error is bad input (status 2), as for `mesh`.
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  const expected = error instanceof Interrupted || error instanceof MeshError;
  process.stderr.write(`bench: ${expected ? (error as Error).message : ((error as Error).stack ?? String(error))}\n`);
  process.exitCode = 1;
}
