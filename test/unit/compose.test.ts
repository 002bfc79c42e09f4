import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadMeshConfig } from '../../config/load.js';
import { repoRoot } from '../support/server-process.js';

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  networks?: string[];
  depends_on?: string[];
}

/** docker-compose.multi-site.yml cannot run here (no Docker engine): its structure is checked instead. */
describe('docker-compose.multi-site.yml', () => {
  const compose = parse(readFileSync(join(repoRoot, 'docker-compose.multi-site.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
    networks: Record<string, { internal?: boolean }>;
  };
  const config = loadMeshConfig(join(repoRoot, 'deploy', 'compose-mesh.json'));
  const services = compose.services;
  const hostOf = (url: string) => new URL(url).hostname;

  it('runs a real Apache CouchDB 3 for every server of the site profiles', () => {
    for (const site of Object.values(config.sites)) {
      const service = services[hostOf(site.server)];
      assert.ok(service, `no service ${hostOf(site.server)} for site ${site.name}`);
      assert.equal(service.image, 'couchdb:3');
    }
  });

  it('has the coordinator, an agent per site that owns steps, and NATS', () => {
    assert.ok(services.coordinator?.command?.includes('coordinator'));
    assert.ok(services.nats);
    for (const step of config.steps) {
      const agent = services[`agent-${step.site}`];
      assert.ok(agent, `no agent for site ${step.site} (step ${step.name})`);
      assert.ok(JSON.stringify(agent.command ?? agent.entrypoint).includes(`--site`));
    }
  });

  it('keeps the unreachable site behind an internal network that nothing of the other sites joins', () => {
    const hidden = Object.values(config.sites).filter((s) => !s.reachable);
    assert.ok(hidden.length > 0);
    for (const site of hidden) {
      const host = hostOf(site.server);
      const lan = services[host].networks?.find((n) => compose.networks[n]?.internal);
      assert.ok(lan, `${host} is on no internal network`);
      for (const [name, service] of Object.entries(services)) {
        const sameSite = name === host || name.endsWith(`-${site.name}`) || name === 'coordinator';
        if (sameSite) continue;
        assert.ok(!service.networks?.includes(lan), `${name} joins ${lan}`);
        assert.ok(!JSON.stringify(service).includes(host), `${name} names ${host}`);
      }
    }
  });

  it('names no password: every password is taken from the environment of docker compose', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (/PASSWORD/.test(key)) assert.match(String(value), /^\$\{[A-Z_]+(:\?[^}]*)?\}$/, `${name}.${key}`);
      }
    }
  });
});
