/**
 * Debian's chromium for the page's browser tests, headless, with a profile folder of the test's
 * own. A missing chromium fails the test (npm run setup installs it): no browser test skips.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { type BrowserContext, chromium } from 'playwright-core';
import type { MeshConfig, SiteConfig } from '../../config/types.js';
import { silentLogger } from '../../core/log.js';
import { type Dashboard, startDashboard } from '../../dashboard/server.js';
import { Database } from '../../store/database.js';

export const CHROMIUM = '/usr/bin/chromium';

export function assertChromium(): void {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run npm run setup (it installs Debian's chromium); this test does not skip`);
}

/** A headless chromium that talks to nothing but the page (no updates, sync or background requests). */
export function launchChromium(profileDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 1000 },
  });
}

/** The status page of `database`, read with the server admin's credentials (operators write with their own), pushes debounced 50 ms. */
export function startAdminDashboard(config: MeshConfig, database: string, adminPassword: string): Promise<Dashboard> {
  const open = (site: SiteConfig, name?: string) =>
    new Database({ url: site.server, database: name ?? database, credentials: { user: 'admin', password: adminPassword } });
  return startDashboard({ config, host: '127.0.0.1', port: 0, logger: silentLogger(), open, debounceMs: 50 });
}
