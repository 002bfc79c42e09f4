/** The private sshd, Slurm cluster and nats-server of a simulation, each started only when it can run here. */
import { existsSync } from 'node:fs';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { SimulationServices } from '../simulation-config.js';
import { type NatsServer, startNatsServer } from './nats.js';
import { type SlurmCluster, startSlurm } from './slurm.js';
import { type TestSshd, startSshd } from './sshd.js';

const SSHD = '/usr/sbin/sshd';
const SLURMCTLD = '/usr/sbin/slurmctld';

/** The services the simulated sites use, each only when it can run here (root, installed); a stand-in is logged otherwise. */
export interface LocalServices {
  services: SimulationServices;
  sshd?: TestSshd;
  slurm?: SlurmCluster;
  nats?: NatsServer;
}

/** Starts the private sshd, Slurm cluster and nats-server that `options` ask for; Slurm's client settings are added to `env`. */
export async function startLocalServices(
  options: { ssh: boolean; slurm: boolean; nats: boolean },
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<LocalServices> {
  const services: SimulationServices = {};
  let sshd: TestSshd | undefined;
  let slurm: SlurmCluster | undefined;
  let nats: NatsServer | undefined;
  const root = process.getuid?.() === 0;
  if (options.ssh && root && existsSync(SSHD)) {
    try {
      sshd = await startSshd();
      services.ssh = { host: '127.0.0.1', port: sshd.port, user: sshd.user, identity_file: sshd.identityFile, host_key_sha256: sshd.hostKeySha256 };
      logger.info({ port: sshd.port }, 'sshd up: proc0 goes over SFTP, lyon runs are started over SSH');
    } catch (error) {
      logger.warn(`no sshd (${errorMessage(error)}): proc0 copies locally, lyon runs start locally`);
    }
  } else if (options.ssh) {
    logger.info('no sshd (needs root and openssh-server): proc0 copies locally, lyon runs start locally');
  }
  if (options.slurm && root && existsSync(SLURMCTLD)) {
    try {
      slurm = await startSlurm();
      Object.assign(env, slurm.env);
      services.slurm = true;
      logger.info('Slurm up: lyon steps run as batch jobs');
    } catch (error) {
      logger.warn(`no Slurm (${errorMessage(error)}): lyon steps run directly`);
    }
  } else if (options.slurm) {
    logger.info('no Slurm (needs root and slurm-wlm): lyon steps run directly');
  }
  if (options.nats) {
    try {
      nats = await startNatsServer();
      services.natsUrl = nats.url;
      logger.info({ url: nats.url }, 'nats-server up: wake-up hints and the claim registry');
    } catch (error) {
      logger.warn(`no NATS (${errorMessage(error)}): CouchDB alone`);
    }
  }
  return { services, sshd, slurm, nats };
}
