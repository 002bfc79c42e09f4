/** `mesh doctor --site S [--unit U] [--env-file F] [--json]`: checks a deployed site (cli/doctor/). */
import { Command, InvalidArgumentError } from 'commander';
import { readEnvFile } from '../../config/env-file.js';
import { configPath } from '../../config/load.js';
import { checkLine } from '../doctor/check.js';
import { runDoctor } from '../doctor/doctor.js';
import { DOCTOR_UNITS, type DoctorUnit } from '../doctor/scope.js';
import type { GlobalOptions } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger } from '../parse.js';

function unitName(text: string): DoctorUnit {
  if (!(DOCTOR_UNITS as readonly string[]).includes(text)) throw new InvalidArgumentError(`"${text}" is not one of ${DOCTOR_UNITS.join(', ')}`);
  return text as DoctorUnit;
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .summary('check a deployed site: one ok/FAIL line per check, with what to do')
    .description(
      'check a deployed site from its machine, one line per check (ok, or FAIL with what to do): the config, each server its processes talk to ' +
        '(reachable, account and role, database, couchapp, replication account), clocks against the servers, SSH targets (pinned host key), ' +
        'the batch system, the folders, NATS if configured. Exit 0 when all pass, 1 when one fails, 2 for an invalid config',
    )
    .requiredOption('--site <site>', 'the site to check')
    .option('--unit <unit>', `check what one of its processes needs only: ${DOCTOR_UNITS.join(', ')}`, unitName)
    .option('--env-file <file>', 'take the MESH_* variables (the accounts) from this environment file only, as the unit whose EnvironmentFile it is gets them')
    .option('--timeout <s>', 'seconds each network check may take', positiveInteger, 10)
    .option('--json', 'print the checks as one JSON object')
    .action(
      action(async (options: { site: string; unit?: DoctorUnit; envFile?: string; timeout: number; json?: boolean }, command: Command) => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        // As the unit sees it: its MESH_* variables come from its environment file alone.
        const env = options.envFile
          ? { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MESH_'))), ...readEnvFile(options.envFile) }
          : process.env;
        const report = await runDoctor({
          configFile: configPath(globals.config),
          site: options.site,
          unit: options.unit,
          env,
          timeoutMs: options.timeout * 1000,
        });
        if (options.json) process.stdout.write(`${JSON.stringify({ ok: report.status === 0, checks: report.checks })}\n`);
        else for (const check of report.checks) process.stdout.write(`${checkLine(check)}\n`);
        process.exitCode = report.status;
      }),
    );
}
