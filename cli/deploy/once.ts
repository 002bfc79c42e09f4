/**
 * A site that may not keep a process alive runs its agent as `--once` passes: started by the
 * trigger of a site that may (over SSH, when work arrives) and, as a fallback for when that site
 * is down, by cron (or Slurm's scrontab) every few minutes. Both run the same argument vector,
 * the one the trigger sends (agents/trigger.ts). Its batch jobs run the script the submitter
 * writes per job (agents/batch/job-file.ts), shown here as a template for the farm's admins.
 */
import { join } from 'node:path';
import { jobScript } from '../../agents/batch/job-file.js';
import { remoteAgentArgv } from '../../agents/trigger.js';
import type { DeployFile } from './files.js';
import type { SitePlan } from './plan.js';
import { cronCommandLine } from './quote.js';

/** The `--config` the site's mesh command names, if it names one. */
export function configOnSite(mesh: readonly string[]): string | undefined {
  const at = mesh.indexOf('--config');
  return at >= 0 ? mesh[at + 1] : undefined;
}

function schedule(everyMinutes: number): string {
  return everyMinutes >= 60 ? `0 */${Math.round(everyMinutes / 60)} * * *` : `*/${everyMinutes} * * * *`;
}

export function crontab(plan: SitePlan, everyMinutes: number): string {
  const { site } = plan;
  const log = join(site.log_dir, 'once.log');
  return [
    `# CouchMesh, site ${site.name}: the fallback --once pass every ${everyMinutes} minutes, written by mesh deploy.`,
    `# ${plan.triggeredBy.length ? `${plan.triggeredBy.map((s) => s.name).join(', ')} runs the same pass over SSH when work arrives; this` : 'This'} one finds work and lost jobs when nothing else runs.`,
    '# Install: crontab -l > mine; cat crontab >> mine; crontab mine',
    `${schedule(everyMinutes)} ${cronCommandLine(remoteAgentArgv(site))} >> ${cronCommandLine([log])} 2>&1`,
    '',
  ].join('\n');
}

/** Slurm's cron (scrontab, Slurm ≥ 20.11): the pass runs as a small batch job, wherever the cluster puts it. */
export function scrontab(plan: SitePlan, everyMinutes: number): string {
  const { site } = plan;
  return [
    `# CouchMesh, site ${site.name}: the fallback --once pass every ${everyMinutes} minutes as a Slurm cron job, written by mesh deploy.`,
    '# Use this or the crontab, not both. Install: scrontab -l > mine; cat scrontab >> mine; scrontab mine',
    `# Add the partition/account options your cluster needs (batch.options of the profile: ${JSON.stringify(site.batch?.options ?? [])}).`,
    `#SCRON --job-name=mesh-${site.name}-once`,
    `#SCRON --time=${Math.min(everyMinutes, 60)}`,
    `#SCRON --output=${join(site.log_dir, 'once-scron.log')}`,
    '#SCRON --open-mode=append',
    `${schedule(everyMinutes)} ${cronCommandLine(remoteAgentArgv(site))}`,
    '',
  ].join('\n');
}

/** What each batch job runs, as the submitter writes it (JOBFILE is the job's own file, written next to its logs). */
export function jobScriptTemplate(plan: SitePlan): string {
  const { site } = plan;
  const batch = site.batch;
  if (!batch) return '';
  const config = configOnSite(site.mesh) ?? '<the config the pass loads: MESH_CONFIG>';
  const script = jobScript([...batch.mesh, '--config', config, 'run-batch', '<JOBFILE>', '--site', site.name]);
  const [shebang, ...rest] = script.split('\n');
  return [
    shebang,
    `# Template of the job script mesh agent --site ${site.name} --once writes for each ${batch.system} job (mode 0700, under`,
    `# ${join(site.log_dir, 'batch')}/), <JOBFILE> replaced by the job's file (0600, JSON: the step and the documents).`,
    `# batch.mesh (${JSON.stringify(batch.mesh)}) must run on the batch nodes, and the config be readable there.`,
    ...rest,
  ].join('\n');
}

export function onceFiles(plan: SitePlan, everyMinutes: number): DeployFile[] {
  if (!plan.once) return [];
  const files: DeployFile[] = [
    { path: 'cron/crontab', content: crontab(plan, everyMinutes), installAs: 'crontab (of the account the site runs as)', mode: 0o644 },
  ];
  if (plan.site.batch?.system === 'slurm')
    files.push({ path: 'cron/scrontab', content: scrontab(plan, everyMinutes), installAs: 'scrontab (instead of the crontab)', mode: 0o644 });
  if (plan.site.batch)
    files.push({ path: 'batch/job-script.sh.template', content: jobScriptTemplate(plan), installAs: '(nothing to install: a reference)', mode: 0o644 });
  return files;
}
