/**
 * The page's operator actions beyond a single retry: pause and resume a step, drain and undrain
 * a site (coordinator/controls.ts), and retry every failed document of a step (with a dry run
 * first, so the page shows the count before the operator confirms). Each is written with the
 * logged-in operator's own credentials; the server's rules decide, not this file.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MeshConfig, SiteConfig } from '../config/types.js';
import { bulkRetry, reasonPattern } from '../coordinator/bulk-retry.js';
import { checkControlTarget, controlsSite, setControl } from '../coordinator/controls.js';
import { retrySite } from '../coordinator/retry.js';
import { serverOf } from '../coordinator/servers.js';
import { MeshError, errorMessage, isMeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { CONTROL_ACTIONS, type ControlAction } from '../core/operator-controls.js';
import { operatorDatabase } from './databases.js';
import { readJsonBody, sendJson } from './http.js';
import { type Session, type Sessions, tokenFrom } from './sessions.js';
import { readingOrder } from './snapshot.js';

type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

const WHY_MAX = 500;

function whyOf(value: unknown, what: string): string {
  const why = typeof value === 'string' ? value.trim() : '';
  if (why.length === 0) throw new MeshError('BAD_INPUT', `${what} needs a why: it is kept with who and when`);
  if (why.length > WHY_MAX || /[\r\n]/.test(why)) throw new MeshError('BAD_INPUT', `the why is one line of at most ${WHY_MAX} characters`);
  return why;
}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 200) throw new MeshError('BAD_INPUT', `${name} must be a string of at most 200 characters`);
  return value;
}

/** The site's server opened with the operator's credentials, or the reason this session cannot write there. */
function writerAt(config: MeshConfig, session: Session, sites: SiteConfig[], what: string) {
  for (const site of sites) {
    const credentials = session.accepted.get(site.server);
    if (credentials) return { site, db: operatorDatabase(config, site, credentials) };
  }
  const at = readingOrder(config)
    .filter((s) => session.accepted.has(s.server))
    .map((s) => s.name);
  throw new MeshError(
    'FORBIDDEN',
    `${what} is written on the server of ${sites[0].name}, and you are logged in at ${at.join(', ') || 'no server'}: log in there`,
  );
}

/** A server's refusal or absence in the operator's words. */
function explained(error: unknown, site: string, user: string): unknown {
  if (isMeshError(error, 'SERVER_UNREACHABLE') || isMeshError(error, 'ABORTED'))
    return new MeshError('SERVER_UNREACHABLE', `the server of ${site} is unreachable: try again when it is back (${errorMessage(error)})`);
  if (isMeshError(error, 'UNAUTHORIZED') || isMeshError(error, 'FORBIDDEN'))
    return new MeshError('FORBIDDEN', `the server of ${site} refused it for ${user}: ${error.reason ?? error.message}`);
  return error;
}

export function operatorActions(options: { config: MeshConfig; logger: Logger; sessions: Sessions; refresh: () => void }): Record<string, Route> {
  const { config, logger, sessions } = options;
  const operator = (req: IncomingMessage, res: ServerResponse): Session | undefined => {
    const session = sessions.get(tokenFrom(req.headers.cookie));
    if (!session) sendJson(res, 403, { error: 'forbidden', reason: 'the dashboard is read-only: log in as an operator to act' });
    return session;
  };
  return {
    'POST /api/control': async (req, res) => {
      const session = operator(req, res);
      if (!session) return;
      const body = await readJsonBody(req);
      const action = body.action as ControlAction;
      if (!(CONTROL_ACTIONS as readonly unknown[]).includes(action)) throw new MeshError('BAD_INPUT', `action is one of ${CONTROL_ACTIONS.join(', ')}`);
      const target = optionalString(body.target, 'target') ?? '';
      checkControlTarget(config, action, target);
      const why = whyOf(body.why, action);
      // The coordinator's server first (one writer's server); another the operator is logged in at, else.
      const preferred = serverOf(config, config.sites[controlsSite(config)]);
      const { site, db } = writerAt(config, session, [preferred, ...readingOrder(config).filter((s) => s.server !== preferred.server)], `${action} ${target}`);
      const result = await setControl(config, db, action, target, { by: `operator/${session.user} (dashboard)`, why }).catch((error) => {
        throw explained(error, site.name, session.user);
      });
      options.refresh();
      logger.info({ user: session.user, action, target, changed: result.changed }, 'operator control from the dashboard');
      sendJson(res, 200, { action, target, changed: result.changed, server: site.name });
    },
    'POST /api/retry-failed': async (req, res) => {
      const session = operator(req, res);
      if (!session) return;
      const body = await readJsonBody(req);
      const step = optionalString(body.step, 'step');
      if (step === undefined) throw new MeshError('BAD_INPUT', 'name the step whose failed documents are retried');
      const reason = optionalString(body.reason, 'reason');
      const run = optionalString(body.run, 'run');
      const dryRun = body.dry_run !== false;
      const why = dryRun ? '' : whyOf(body.why, 'retry');
      const { site, db } = writerAt(config, session, [serverOf(config, config.sites[retrySite(config, step)])], `retrying ${step}`);
      const filter = { step, ...(reason !== undefined ? { reason: reasonPattern(reason) } : {}), ...(run !== undefined ? { run } : {}) };
      const result = await bulkRetry(config, db, filter, { dryRun, by: `operator/${session.user} (dashboard)`, why }).catch((error) => {
        throw explained(error, site.name, session.user);
      });
      if (!dryRun) {
        options.refresh();
        logger.info({ user: session.user, step, matched: result.matched, retried: result.retried }, 'bulk retry from the dashboard');
      }
      sendJson(res, 200, { step, dry_run: dryRun, server: site.name, ...result, errors: result.errors.slice(0, 20) });
    },
  };
}
