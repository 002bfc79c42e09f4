/**
 * The step supervisor: one small process per agent (agents/step-supervisor.ts starts it). The
 * agent writes `+<pgid>` for each step's process group it starts and `-<pgid>` once that group
 * is over; when its stdin ends — the agent died, by whatever signal — it SIGKILLs every group
 * still registered and exits. It acts on nothing else: a Ctrl-C or SIGTERM sent to the
 * agent's whole process group must not take it away before the agent is gone.
 */
import { createInterface } from 'node:readline';

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(signal, () => {});
// Signals are ignored from here on: say so (StepSupervisor.ready), then write nothing more.
process.stdout.end('ready\n');

const groups = new Set<number>();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const pgid = Number(line.slice(1));
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  if (line.startsWith('+')) groups.add(pgid);
  else if (line.startsWith('-')) groups.delete(pgid);
});
lines.on('close', () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // ESRCH: that group has ended by itself.
    }
  }
  process.exit(0);
});
