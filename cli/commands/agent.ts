import { Command } from 'commander';
import { hostname } from 'node:os';
import type { AgentContext } from '../../agents/context.js';
import type { RunOutcome } from '../../agents/heartbeat.js';
import type { RemoteTriggers } from '../../agents/trigger.js';
import { natsCredentials } from '../../config/credentials.js';
import { MeshError } from '../../core/errors.js';
import type { MeshChannel } from '../../core/nats.js';
import { onceIdentity } from '../../store/heartbeats.js';
import { type GlobalOptions, defaultAgentName, loadConfig, makeLogger, openSiteDatabase, siteOf } from '../context.js';
import { action } from '../exit.js';
import { positiveInteger, positiveNumber } from '../parse.js';

// What runs the site's work is imported on the path that needs it: a batch site's `--once`
// pass (started for every document batch lyon is handed) loads neither the step agent, nor the
// SSH trigger (ssh2), nor NATS.
export function agentCommand(): Command {
  return new Command('agent')
    .description('run the steps the site owns: claim ready documents, run them, record the results')
    .requiredOption('--site <site>', 'the site this agent runs for')
    .option('--once', 'process what is ready now, then exit (for sites that forbid long-lived processes)')
    .option('--concurrency <n>', 'steps run at the same time', positiveInteger, 1)
    .option('--name <name>', 'agent name, unique in the mesh (default: site-host-pid; with --once the heartbeat is site-host-once, one per host)')
    .option('--trigger-local', 'start the --once agents of sites without ssh settings on this machine (one-machine topologies)')
    .option('--trigger-interval <s>', 'at least this many seconds between two runs of a triggered agent', positiveNumber, 30)
    .action(
      action(
        async (
          options: { site: string; once?: boolean; concurrency: number; name?: string; triggerLocal?: boolean; triggerInterval: number },
          command: Command,
        ) => {
          const globals = command.optsWithGlobals<GlobalOptions>();
          const config = loadConfig(globals);
          const site = siteOf(config, options.site);
          const steps = config.steps.filter((s) => s.site === site.name);
          if (steps.length === 0)
            throw new MeshError(
              'CONFIG_INVALID',
              `site ${site.name} owns no step in ${config.source}; steps are owned by: ${config.steps.map((s) => `${s.name}→${s.site}`).join(', ')}`,
            );
          const name = options.name ?? defaultAgentName(site.name);
          const host = hostname();
          // Every --once run claims under its own name; their heartbeat is one document per host.
          const heartbeatAs = options.once ? (options.name ?? onceIdentity(site.name, host)) : undefined;
          const logger = makeLogger(globals, { site: site.name, agent: name });
          const force = new AbortController();
          const db = openSiteDatabase(config, site, { retry: 'until-aborted', batchWrites: true, signal: force.signal, logger });
          const base = { config, site, name, host, db, logger, steps, now: () => new Date(), ...(heartbeatAs ? { heartbeatAs } : {}) };
          if (site.batch) {
            // A batch site runs nothing itself: it submits jobs and checks on them (agents/batch/).
            // It uses neither NATS nor triggers: connecting to them would only delay its pass.
            const [{ BatchSubmitter }, { batchSystem }, { Heartbeat }] = await Promise.all([
              import('../../agents/batch/submitter.js'),
              import('../../agents/batch/adapter.js'),
              import('../../agents/heartbeat.js'),
            ]);
            const ctx: AgentContext = base;
            const stop = new AbortController();
            const onStop = () => stop.abort();
            process.once('SIGTERM', onStop);
            process.once('SIGINT', onStop);
            logger.info({ steps: steps.map((s) => s.name), server: site.server, once: Boolean(options.once), batch: site.batch.system }, 'batch agent started');
            // A heartbeat so `mesh status` shows batch sites' agents too.
            const heartbeat = new Heartbeat(ctx, () => []);
            heartbeat.start();
            let outcome: RunOutcome = 'failed';
            try {
              await new BatchSubmitter(ctx, batchSystem(site.batch), site.batch).run({ once: Boolean(options.once), signal: stop.signal });
              outcome = 'ok';
            } finally {
              await heartbeat.stop('stopped', outcome);
            }
            process.off('SIGTERM', onStop);
            process.off('SIGINT', onStop);
            return;
          }
          const [{ Agent }, { stepSupervisor }] = await Promise.all([import('../../agents/agent.js'), import('../../agents/step-supervisor.js')]);
          let triggers: RemoteTriggers | undefined;
          if (!options.once) {
            const [{ RemoteTriggers }, { TriggerRecorder }] = await Promise.all([import('../../agents/trigger.js'), import('../../agents/trigger-record.js')]);
            // How each triggered run ended goes into the trigger records, for the alerts (a run that fails before it writes anything).
            triggers = new RemoteTriggers(config, site.name, logger, {
              local: options.triggerLocal,
              intervalMs: options.triggerInterval * 1000,
              recorder: new TriggerRecorder(db, { site: site.name, agent: name, host }, logger),
            });
          }
          // NATS (optional): connecting never fails because NATS is down; it keeps trying in the background.
          let channel: MeshChannel | undefined;
          if (config.nats) {
            const { MeshChannel } = await import('../../core/nats.js');
            const longestLeaseMs = Math.max(...config.steps.map((s) => s.lease_s)) * 1000;
            channel = await MeshChannel.connect(config.nats.url, {
              logger,
              signal: force.signal,
              name,
              credentials: natsCredentials(),
              claimTtlMs: longestLeaseMs + Math.max(5000, longestLeaseMs / 4),
            });
          }
          const ctx: AgentContext = { ...base, channel, ...(triggers?.triggers.size ? { triggers } : {}) };
          // Fails at once when setpriv is missing, rather than at every step.
          stepSupervisor.start();
          const agent = new Agent(ctx, { concurrency: options.concurrency, once: Boolean(options.once) });
          const onSignal = (signal: string) => {
            logger.info({ signal }, 'signal received');
            if (agent.state === 'stopping') {
              // Second signal: the agent kills its steps and releases their claims; a server
              // that does not answer must not keep the process alive for long.
              setTimeout(() => force.abort(), 5000).unref();
              setTimeout(() => process.exit(1), 10_000).unref();
            } else {
              // Requests still retrying against a failing server end once the grace period is
              // over, or after 2 s when nothing is claimed or running (the last heartbeat has its own deadline).
              setTimeout(() => force.abort(), agent.idle ? 2000 : config.agent.grace_s * 1000 + 5000).unref();
            }
            void agent.stop();
          };
          process.on('SIGTERM', onSignal);
          process.on('SIGINT', onSignal);
          logger.info({ steps: steps.map((s) => s.name), server: site.server, once: Boolean(options.once), concurrency: options.concurrency }, 'agent started');
          await agent.run().finally(() => channel?.close());
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
        },
      ),
    );
}
