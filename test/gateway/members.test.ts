import { Pool } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { guardedConnector } from '../../src/gateway/forward.js';
import { MemberAddressRefusedError, isConnectFailure } from '../../src/gateway/member-errors.js';
import { httpGet } from '../helpers/http.js';
import { deadAddress, startRawUpstream, startUpstream } from '../helpers/upstream.js';
import type { TestUpstream } from '../helpers/upstream.js';
import { memberOf, startGateway, waitFor } from './harness.js';

async function started<T extends TestUpstream>(upstream: Promise<T>): Promise<T> {
  const u = await upstream;
  onTestFinished(() => u.close());
  return u;
}

describe('gateway members', () => {
  it('spreads requests over the members', async () => {
    const a = await started(startUpstream());
    const b = await started(startUpstream());
    const gw = await startGateway({ 'app.test': { members: [a.address, b.address] } });
    for (let i = 0; i < 10; i++) expect((await httpGet(gw.port, 'app.test')).status).toBe(200);
    expect(a.requests.length).toBe(5);
    expect(b.requests.length).toBe(5);
    expect(memberOf(gw, 'app.test', a.address).inFlight).toBe(0);
  });

  it('retries on another member when one refuses connections, and ejects it', async () => {
    const live = await started(startUpstream());
    const dead = await deadAddress();
    const gw = await startGateway({ 'app.test': { members: [dead, live.address] } });
    for (let i = 0; i < 4; i++) expect((await httpGet(gw.port, 'app.test')).status).toBe(200);
    expect(live.requests.length).toBe(4);
    const member = memberOf(gw, 'app.test', dead);
    expect(member.isAvailable(Date.now())).toBe(false);
    expect(member.consecutiveFailures).toBe(1);
    expect(member.inFlight).toBe(0);
    expect(gw.logs.some((l) => l.msg === 'member failed, retrying on another')).toBe(true);
  });

  it('answers 502 when every member is down, quickly, with a reason and an error line', async () => {
    const gw = await startGateway({ 'app.test': { members: [await deadAddress(), await deadAddress()] } });
    const started = Date.now();
    const res = await httpGet(gw.port, 'app.test');
    expect(res.status).toBe(502);
    expect(res.body).toContain('every member');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(gw.logs.some((l) => l.level === 50 && l.code === 'GW_ALL_MEMBERS_DOWN')).toBe(true);
    // Both are ejected now: the next request fails without trying.
    expect((await httpGet(gw.port, 'app.test')).status).toBe(502);
  });

  it('says what failed, not "every member is down", when its one retry failed but another member is up', async () => {
    const good = await startUpstream((_req, res) => res.end('up'));
    const gw = await startGateway({ 'app.test': { members: [await deadAddress(), await deadAddress(), good.address] } });
    const res = await httpGet(gw.port, 'app.test');
    expect(res.status).toBe(502);
    expect(res.body).not.toContain('every member');
    // The next request reaches the member that is up.
    expect((await httpGet(gw.port, 'app.test')).body).toBe('up');
  });

  it('answers 503 for a cluster with no members', async () => {
    const gw = await startGateway({ 'app.test': { members: [] } });
    const res = await httpGet(gw.port, 'app.test');
    expect(res.status).toBe(503);
    expect(res.body).toContain('no members');
  });

  it('answers 504 when a member accepts but sends no headers within the response timeout', async () => {
    const hanging = await started(startRawUpstream(() => {}));
    const gw = await startGateway({ 'app.test': { members: [hanging.address] } }, { limits: { upstreamResponseTimeoutMs: 300 } });
    const t0 = Date.now();
    const res = await httpGet(gw.port, 'app.test');
    const elapsed = Date.now() - t0;
    expect(res.status).toBe(504);
    expect(res.body).toContain('no response headers in time');
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1_500);
    expect(memberOf(gw, 'app.test', hanging.address).inFlight).toBe(0);
  });

  it('answers 502 when a member replies with something that is not HTTP or has an invalid Content-Length', async () => {
    const garbage = await started(startRawUpstream((s) => s.once('data', () => s.end('SMTP ready\r\n\r\n'))));
    const badLength = await started(startRawUpstream((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nhello'))));
    const twoLengths = await started(
      startRawUpstream((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'))),
    );
    const gw = await startGateway({
      'garbage.test': { members: [garbage.address] },
      'length.test': { members: [badLength.address] },
      'two.test': { members: [twoLengths.address] },
    });
    for (const host of ['garbage.test', 'length.test', 'two.test']) {
      const res = await httpGet(gw.port, host);
      expect(res.status, host).toBe(502);
      expect(res.body, host).toContain('invalid HTTP response');
    }
  });
});

describe('gateway member pools', () => {
  it('closes the pool of a member no route uses any more', async () => {
    const a = await started(startUpstream());
    const b = await started(startUpstream());
    const gw = await startGateway({ 'app.test': { members: [a.address] } });
    expect((await httpGet(gw.port, 'app.test')).status).toBe(200);
    expect(a.connections.size).toBe(1); // kept alive by the pool
    gw.publish({ 'app.test': { members: [b.address] } });
    await waitFor(() => a.connections.size === 0, 3_000, "the dropped member's connections to close");
    expect((await httpGet(gw.port, 'app.test')).body).toBe(`hello from ${b.port}`);
  });
});

describe('member address policy at connect time', () => {
  it('closes a member connection whose name resolved to a refused address, as a connect failure', async () => {
    const member = await started(startUpstream());
    const refuseLoopback = (ip: string) => (ip === '127.0.0.1' ? `${ip} is refused by this test` : undefined);
    const pool = new Pool(`http://localhost:${member.port}`, { connect: guardedConnector(2000, refuseLoopback) });
    onTestFinished(() => pool.destroy());
    const err = await pool.request({ path: '/', method: 'GET' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MemberAddressRefusedError);
    expect(isConnectFailure(err)).toBe(true);
    expect(String((err as Error).message)).toMatch(/localhost resolved to 127\.0\.0\.1 is refused by this test/);
    expect(member.requests).toHaveLength(0);
    // The policy in force lets loopback through: the same member answers.
    const open = new Pool(`http://localhost:${member.port}`, { connect: guardedConnector(2000) });
    onTestFinished(() => open.destroy());
    expect((await open.request({ path: '/', method: 'GET' })).statusCode).toBe(200);
  });
});
