import { mkdtempSync } from 'node:fs';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Cluster } from '../../src/control/index.js';
import { httpGet } from '../helpers/http.js';
import { startTestServer } from '../helpers/server.js';
import { startUpstream } from '../helpers/upstream.js';

/** Debian's chromium: `.ci/run` installs it; the test fails (never skips) when it is missing. */
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('dashboard in a real browser', () => {
  it('shows a published cluster appear, then one of its members turn unhealthy', { timeout: 60_000 }, async () => {
    const t = await startTestServer();
    const healthy = await startUpstream();
    onTestFinished(() => healthy.close());
    const doomed = await startUpstream();
    onTestFinished(() => doomed.close());

    const dir = mkdtempSync(join(tmpdir(), 'tfgate-dashboard-'));
    const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1366, height: 800 },
      timeout: 30_000,
    });
    onTestFinished(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(`http://${t.server.admin}/`);
    await page.locator('#live.ok').waitFor({ timeout: 10_000 });
    await page.getByText('No routes yet').waitFor({ timeout: 10_000 });

    // A client session publishes a cluster: it appears on the page at the next poll.
    const location = await t.connect('alice');
    await location.endpointFor('shop.test').publish(new Cluster([healthy.address, doomed.address]), 'shop.test');
    const route = page.locator('[data-fqdn="shop.test"]');
    await route.waitFor({ timeout: 10_000 });
    await route.locator(`tr[data-member="${doomed.address}"][data-state="healthy"]`).waitFor({ timeout: 10_000 });
    await page.locator('tr[data-session]', { hasText: 'alice' }).waitFor({ timeout: 10_000 });

    // A member dies; traffic finds out (connection refused → ejected, the request retried on the other).
    await doomed.close();
    for (let i = 0; i < 4; i++) expect((await httpGet(t.server.http, 'shop.test')).status).toBe(200);
    const sick = route.locator(`tr[data-member="${doomed.address}"]:not([data-state="healthy"])`);
    await sick.waitFor({ timeout: 10_000 });
    await expect(sick.textContent()).resolves.toMatch(/unhealthy/);
    await expect(route.locator(`tr[data-member="${healthy.address}"]`).getAttribute('data-state')).resolves.toBe('healthy');
    await expect(page.locator('#t-down').textContent()).resolves.toBe('1');

    const screenshot = join(dir, 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(statSync(screenshot).size).toBeGreaterThan(10_000);
    console.log(`dashboard screenshot: ${screenshot}`);
  });
});
