import { describe, expect, it, onTestFinished } from 'vitest';
import { HealthChecker, RetryBudget } from '../../src/upstreams/index.js';
import type { Upstream } from '../../src/upstreams/index.js';
import { httpGet } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';
import { startGateway, waitFor } from '../gateway/harness.js';

/** An upstream whose /health answers 200 or 503 as the test says, counting the checks. */
async function checkedUpstream() {
  const state = { ok: true, checks: 0 };
  const upstream = await startUpstream((req, res) => {
    if (req.url === '/health') {
      state.checks++;
      res.statusCode = state.ok ? 200 : 503;
      res.end();
      return;
    }
    res.end(`hello from ${upstream.port}`);
  });
  onTestFinished(() => upstream.close());
  return Object.assign(upstream, { state });
}

function startChecker(members: () => Iterable<Upstream>, changes: string[] = []): HealthChecker {
  const checker = new HealthChecker({
    path: '/health',
    intervalMs: 40,
    timeoutMs: 300,
    members,
    onChange: (member, healthy) => changes.push(`${member.address} ${healthy ? 'up' : 'down'}`),
  });
  checker.start();
  onTestFinished(() => checker.close());
  return checker;
}

describe('active health checks', () => {
  it('takes a member failing its checks out of balancing and brings it back when it passes', async () => {
    const a = await checkedUpstream();
    const b = await checkedUpstream();
    const gw = await startGateway({ 'app.test': { members: [a.address, b.address] } });
    const changes: string[] = [];
    startChecker(() => gw.dataPlane.registry.all(), changes);
    await waitFor(() => a.state.checks > 0 && b.state.checks > 0, 3_000, 'first checks');

    b.state.ok = false;
    await waitFor(() => changes.includes(`${b.address} down`), 3_000, 'b taken out');
    const member = gw.dataPlane.registry.peek(b.address)!;
    expect(member.isAvailable(Date.now())).toBe(false);
    // Passive ejection is untouched: the member is out only because of its checks.
    expect(member.ejectedUntil).toBe(0);
    for (let i = 0; i < 10; i++) expect((await httpGet(gw.port, 'app.test')).body).toBe(`hello from ${a.port}`);

    b.state.ok = true;
    await waitFor(() => changes.includes(`${b.address} up`), 3_000, 'b back');
    const bodies = new Set<string>();
    for (let i = 0; i < 10; i++) bodies.add((await httpGet(gw.port, 'app.test')).body);
    expect(bodies).toEqual(new Set([`hello from ${a.port}`, `hello from ${b.port}`]));
  });

  it('needs two failures in a row, and counts a member that cannot be connected to or is too slow as failing', async () => {
    const slow = await startUpstream(() => {}); // never answers
    onTestFinished(() => slow.close());
    const ok = await checkedUpstream();
    const gw = await startGateway({ 'app.test': { members: [slow.address, ok.address] } });
    const changes: string[] = [];
    startChecker(() => gw.dataPlane.registry.all(), changes);
    await waitFor(() => changes.includes(`${slow.address} down`), 3_000, 'slow member taken out');
    expect(gw.dataPlane.registry.peek(ok.address)!.healthy).toBe(true);
    expect(ok.state.checks).toBeGreaterThanOrEqual(2);
  });

  it('checks members a republish adds, and stops checking those it drops', async () => {
    const a = await checkedUpstream();
    const b = await checkedUpstream();
    const gw = await startGateway({ 'app.test': { members: [a.address] } });
    startChecker(() => gw.dataPlane.registry.all());
    await waitFor(() => a.state.checks > 0, 3_000, 'a checked');
    expect(b.state.checks).toBe(0);
    gw.publish({ 'app.test': { members: [b.address] } });
    await waitFor(() => b.state.checks > 2, 3_000, 'b checked');
    const before = a.state.checks;
    await waitFor(() => b.state.checks > 8, 3_000, 'more rounds');
    expect(a.state.checks - before).toBeLessThanOrEqual(1); // at most the check already under way
  });

  it('stops on close: no more checks, no timers keeping the process up', async () => {
    const a = await checkedUpstream();
    const gw = await startGateway({ 'app.test': { members: [a.address] } });
    const checker = startChecker(() => gw.dataPlane.registry.all());
    await waitFor(() => a.state.checks > 1, 3_000, 'checks');
    checker.close();
    await new Promise((resolve) => setTimeout(resolve, 100)); // let a check already answered settle
    const after = a.state.checks;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(a.state.checks).toBe(after);
  });
});

describe('RetryBudget', () => {
  it('allows at most burst + ratio × requests retries', () => {
    const budget = new RetryBudget(0.2, 5);
    let allowed = 0;
    for (let i = 0; i < 1_000; i++) {
      budget.request();
      if (budget.tryRetry()) allowed++;
    }
    expect(allowed).toBeLessThanOrEqual(5 + 200);
    expect(allowed).toBeGreaterThanOrEqual(199);
    expect(budget.denied).toBe(1_000 - allowed);
  });

  it('never retries with a ratio of 0', () => {
    const budget = new RetryBudget(0);
    budget.request();
    expect(budget.tryRetry()).toBe(false);
  });
});
