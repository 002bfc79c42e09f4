/** The checks of what the site connects to besides its servers: SSH targets (trigger, SFTP) and NATS. */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { natsCredentials } from '../../config/credentials.js';
import { connectSsh, describeTarget, normaliseFingerprint } from '../../agents/executors/ssh-connect.js';
import { errorMessage, isMeshError } from '../../core/errors.js';
import { scrubUrl } from '../../core/log.js';
import { type Check, failure, pass } from './check.js';
import { checkSecretFile } from './host.js';
import type { SshScope } from './scope.js';

/**
 * The pinned host key (`ssh.host_key_sha256` of the profile: CouchMesh pins there, not in
 * known_hosts), the identity file's mode, then a real session: the server must present the
 * pinned key and accept ours. Nothing is run over it.
 */
export async function checkSsh(scope: SshScope, timeoutMs: number): Promise<Check[]> {
  const { target, site } = scope;
  const what = `ssh ${site} ${describeTarget(target)}`;
  const pin = normaliseFingerprint(target.host_key_sha256);
  if (!pin)
    return [
      failure(
        what,
        `sites.${site}.ssh.host_key_sha256 (${JSON.stringify(target.host_key_sha256)}) is no SHA-256 fingerprint`,
        `ask ${site}'s administrator for ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub and pin that`,
      ),
    ];
  const key = await checkSecretFile(
    target.identity_file,
    `ssh identity for ${site}`,
    `put the private key authorized at ${site} there (mode 0600), or point sites.${site}.ssh.identity_file at it`,
  );
  if (key) return [key];
  let client;
  try {
    client = await connectSsh(target, { site, timeoutMs });
  } catch (error) {
    const fix = isMeshError(error, 'SSH_HOST_KEY_MISMATCH')
      ? `pin the new key in sites.${site}.ssh.host_key_sha256 only once ${site}'s administrator confirms it`
      : `see above; the key's line in ${site}'s authorized_keys comes from mesh deploy --site ${site}`;
    return [failure(what, errorMessage(error), fix)];
  }
  client.end();
  return [pass(what, `host key matches the pinned ${pin}; key ${target.identity_file} accepted (${scope.why})`)];
}

/** A connection, a round trip, and JetStream (the claim registry's key-value buckets need it). */
export async function checkNats(url: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Check> {
  const what = `nats ${scrubUrl(url)}`;
  const fix = 'start nats-server with -js (JetStream) there, or remove nats.url: everything works without NATS, only slower';
  let credentials;
  try {
    credentials = natsCredentials(env);
  } catch (error) {
    return failure(what, errorMessage(error), 'give MESH_NATS_USER and a readable MESH_NATS_PASSWORD_FILE');
  }
  let nc;
  try {
    nc = await connect({ servers: url, timeout: timeoutMs, reconnect: false, name: 'mesh-doctor', user: credentials?.user, pass: credentials?.password });
  } catch (error) {
    return failure(what, `cannot connect: ${errorMessage(error)}`, fix);
  }
  try {
    const started = Date.now();
    await nc.flush();
    const rtt = Date.now() - started;
    await (await jetstreamManager(nc, { timeout: timeoutMs })).getAccountInfo();
    return pass(what, `connected (nats-server ${nc.info?.version ?? '?'}, round trip ${rtt} ms), JetStream enabled`);
  } catch (error) {
    return failure(what, `connected, but: ${errorMessage(error)}`, fix);
  } finally {
    await nc.close().catch(() => undefined);
  }
}
