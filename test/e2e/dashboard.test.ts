import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Cluster } from '../../src/control/index.js';
import { httpGet, httpRequest } from '../helpers/http.js';
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

/** A headless Chromium with its own profile, closed when the test ends. */
async function launch(extraArgs: string[] = []): Promise<{ context: BrowserContext; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-dashboard-'));
  const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    viewport: { width: 1366, height: 800 },
    timeout: 30_000,
  });
  onTestFinished(() => context.close());
  return { context, dir };
}

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
  it('shows the first 100 of 100,000 routes at once, asks for no more, and finds others with its search box', { timeout: 60_000 }, async () => {
    const routes: Record<string, { members: string[] }> = {};
    for (let i = 0; i < 100_000; i++) routes[`app-${i}.test`] = { members: ['127.0.0.1:1'] };
    const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
    writeFileSync(file, JSON.stringify(routes));
    const t = await startTestServer(['--routes', file]);

    const { context } = await launch();
    const page = context.pages()[0] ?? (await context.newPage());
    const asked: string[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/status') asked.push(request.url());
    });
    await page.goto(`http://${t.server.admin}/`);
    await page.locator('#live.ok').waitFor({ timeout: 10_000 });
    await expect(page.locator('.route').count()).resolves.toBe(100);
    await expect(page.locator('#t-routes').textContent()).resolves.toBe('100,000');
    await expect(page.locator('#shown').textContent()).resolves.toBe('showing the first 100 of 100,000: search to find others');
    const first = [...Object.keys(routes)].sort().slice(0, 100);
    await expect(page.locator('.route').evaluateAll((cards) => cards.map((card) => card.getAttribute('data-fqdn')))).resolves.toEqual(first);

    await page.locator('#search').fill('APP-9999');
    await page.locator('[data-fqdn="app-99999.test"]').waitFor({ timeout: 10_000 });
    await expect(page.locator('.route').count()).resolves.toBe(11);
    await expect(page.locator('#shown').textContent()).resolves.toBe('11 of 100,000 match');
    await page.locator('#search').fill('no-such-name');
    await page.getByText('No route\'s name contains \u201cno-such-name\u201d.').waitFor({ timeout: 10_000 });

    expect(asked.length).toBeGreaterThanOrEqual(3);
    for (const url of asked) expect(new URL(url).searchParams.get('limit')).toBe('100');
    expect(asked.map((url) => new URL(url).searchParams.get('q'))).toContain('APP-9999');
  });

  it('does not run under a name re-pointed at the admin listener (DNS rebinding)', { timeout: 60_000 }, async () => {
    const t = await startTestServer();
    await t.connect('alice');
    const port = Number(t.server.admin.split(':').pop());
    const { context } = await launch([`--host-resolver-rules=MAP evil.example 127.0.0.1`]);
    const page = context.pages()[0] ?? (await context.newPage());
    const response = await page.goto(`http://evil.example:${port}/`);
    expect(response?.status()).toBe(421);
    await expect(page.locator('#live').count()).resolves.toBe(0);
    const read = await page.evaluate(() => fetch('/status').then(async (res) => ({ status: res.status, body: await res.text() })));
    expect(read.status).toBe(421);
    expect(read.body).not.toContain('alice');
    // The same listener, by its address, serves the page.
    expect((await httpRequest(port, { host: `127.0.0.1:${port}`, path: '/' })).status).toBe(200);
  });
});
