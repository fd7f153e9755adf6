import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PlaneMetrics } from '../../src/gateway/index.js';
import { httpRequest, rawConnect, rawRequest, readUntil, statusOf } from '../helpers/http.js';
import { deadAddress, startRawUpstream, startUpstream } from '../helpers/upstream.js';
import { startGateway, waitFor } from './harness.js';

async function member(handler?: Parameters<typeof startUpstream>[0]) {
  const upstream = await startUpstream(handler);
  onTestFinished(() => upstream.close());
  return upstream;
}

describe('retry budget', () => {
  it('keeps retries under burst + 20% of requests when a member keeps failing', async () => {
    const good = await member();
    const dead = await deadAddress();
    // Time leaps a minute per reading, so the dead member's ejection never holds and it keeps being picked.
    let clock = 0;
    const gw = await startGateway({ 'app.test': { members: [dead, good.address] } }, { now: () => (clock += 60_000) });
    const statuses: number[] = [];
    for (let i = 0; i < 100; i++) statuses.push((await httpRequest(gw.port, { host: 'app.test' })).status);
    const retries = gw.logs.filter((l) => l.msg === 'member failed, retrying on another').length;
    const spent = gw.logs.filter((l) => l.msg === 'member failed, retry budget spent').length;
    expect(retries).toBe(gw.gateway.retryBudget.retries);
    expect(retries).toBeLessThanOrEqual(10 + 20);
    expect(retries).toBeGreaterThanOrEqual(20);
    expect(spent).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 502)).toHaveLength(spent);
    expect(statuses.filter((s) => s === 200)).toHaveLength(100 - spent);
  });

  it('retries a GET the member closed on before answering, but never a POST', async () => {
    const closer = await startRawUpstream((socket) => socket.on('data', () => socket.destroy()));
    onTestFinished(() => closer.close());
    const good = await member();
    const gw = await startGateway({ 'app.test': { members: [closer.address, good.address] } });
    for (let i = 0; i < 4; i++) expect((await httpRequest(gw.port, { host: 'app.test' })).status).toBe(200);
    expect(closer.received.length).toBeGreaterThan(0); // the member did get GETs, and closed on them
    const posts: number[] = [];
    for (let i = 0; i < 4; i++) posts.push((await httpRequest(gw.port, { host: 'app.test', method: 'POST', body: 'x' })).status);
    expect(posts).toContain(502);
    expect(posts).toContain(200);
  });
});

describe('per-member in-flight cap (circuit breaker)', () => {
  it('answers 503 at once, with the reason, when every member is at its cap', async () => {
    const held: (() => void)[] = [];
    let hold = true;
    const slow = await member((_req, res) => (hold ? held.push(() => res.end('late')) : res.end('now')));
    const gw = await startGateway({ 'app.test': { members: [slow.address] } }, { limits: { maxInFlightPerMember: 2 } });
    const pending = [httpRequest(gw.port, { host: 'app.test' }), httpRequest(gw.port, { host: 'app.test' })];
    await waitFor(() => held.length === 2, 3_000, 'two requests at the member');
    const t0 = Date.now();
    const refused = await httpRequest(gw.port, { host: 'app.test' });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/2 requests in flight/);
    expect(Date.now() - t0).toBeLessThan(500);
    expect(gw.logs.some((l) => l.code === 'GW_MEMBERS_BUSY')).toBe(true);
    hold = false;
    for (const release of held) release();
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([200, 200]);
    expect((await httpRequest(gw.port, { host: 'app.test' })).status).toBe(200); // the cap frees as requests end
  });
});

describe('request body limit', () => {
  it('refuses a Content-Length over the limit with 413 before forwarding anything', async () => {
    const seen: string[] = [];
    const echo = await member((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => (seen.push(body), res.end(`${body.length}`)));
    });
    const gw = await startGateway({ 'app.test': { members: [echo.address] } }, { limits: { maxBodyBytes: 1_000 } });
    const raw = await rawRequest(gw.port, `POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2000\r\n\r\n${'a'.repeat(2_000)}`);
    expect(statusOf(raw)).toBe(413);
    expect(raw).toMatch(/connection: close/i);
    expect(echo.requests).toHaveLength(0);
    expect((await httpRequest(gw.port, { host: 'app.test', method: 'POST', body: 'b'.repeat(1_000) })).body).toBe('1000');
  });

  it('cuts a chunked body once it goes over the limit, and passes one under it', async () => {
    const seen: number[] = [];
    const echo = await member((req, res) => {
      let length = 0;
      req.on('data', (c: Buffer) => (length += c.length));
      req.on('error', () => {});
      req.on('close', () => seen.push(length));
      req.on('end', () => res.end(`${length}`));
    });
    const gw = await startGateway({ 'app.test': { members: [echo.address] } }, { limits: { maxBodyBytes: 1_000 } });
    const chunk = `258\r\n${'c'.repeat(600)}\r\n`;
    const over = await rawRequest(gw.port, `POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}${chunk}${chunk}0\r\n\r\n`);
    expect(statusOf(over)).toBe(413);
    expect(over).toContain('over the limit of 1000');
    await waitFor(() => seen.length === 1 || echo.requests.length === 0, 2_000, 'the member request to end');
    expect(seen.every((n) => n <= 1_000)).toBe(true);
    const under = await rawRequest(gw.port, `POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk}0\r\n\r\n`);
    expect(statusOf(under)).toBe(200);
    expect(under.endsWith('600')).toBe(true);
    expect(gw.gateway.inFlight).toBe(0);
  });
});

describe('stalled request bodies', () => {
  /** Sends a head announcing 1000 body bytes, then one byte, then nothing. */
  async function stalledUpload(port: number) {
    const socket = await rawConnect(port);
    onTestFinished(() => {
      socket.destroy();
    });
    socket.write('POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\nx');
    return socket;
  }

  it('answers 408 to a body that sends nothing for the idle timeout, freeing the member connection for others', async () => {
    const reader = await member((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    reader.server.requestTimeout = 0; // a lenient member: the gateway must not rely on it cutting stalled uploads
    const gw = await startGateway(
      { 'app.test': { members: [reader.address] } },
      { limits: { upstreamMaxConnections: 2, idleTimeoutMs: 500, upstreamResponseTimeoutMs: 2_000 } },
    );
    const stalled = [await stalledUpload(gw.port), await stalledUpload(gw.port)];
    const answers = stalled.map((socket) => readUntil(socket, (t) => t.includes('\r\n\r\n'), 3_000).catch((err: Error) => err.message));
    await waitFor(() => reader.requests.length === 2, 2_000, 'both uploads at the member');
    const t0 = Date.now();
    const legit = await httpRequest(gw.port, { host: 'app.test', timeoutMs: 3_000 });
    expect(legit.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(2_000);
    for (const answer of await Promise.all(answers)) {
      expect(statusOf(answer)).toBe(408);
      expect(answer).toMatch(/connection: close/i);
    }
    await Promise.all(stalled.map((socket) => (socket.destroyed ? undefined : once(socket, 'close'))));
    expect(gw.logs.some((l) => l.code === 'GW_REQUEST_TIMEOUT')).toBe(true);
  });

  it('answers 504, not 408, when it is the member that stops reading an upload', async () => {
    const deaf = await startRawUpstream((socket) => socket.pause());
    onTestFinished(() => deaf.close());
    const gw = await startGateway(
      { 'app.test': { members: [deaf.address] } },
      { limits: { idleTimeoutMs: 500, upstreamResponseTimeoutMs: 10_000, maxBodyBytes: 0 } },
    );
    const socket = await rawConnect(gw.port);
    onTestFinished(() => {
      socket.destroy();
    });
    const answer = readUntil(socket, (t) => t.includes('\r\n\r\n'), 8_000);
    socket.write(`POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${256 * 1024 * 1024}\r\n\r\n`);
    // Write until every buffer between here and the deaf member is full (bounded: 256 MiB at most).
    const chunk = Buffer.alloc(256 * 1024, 0x78);
    for (let sent = 0; sent < 1024 && socket.write(chunk); sent++);
    const started = Date.now();
    const text = await answer;
    expect(statusOf(text)).toBe(504);
    expect(text).toMatch(/the member read none of the request body/);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(gw.logs.some((l) => l.code === 'GW_UPSTREAM_TIMEOUT')).toBe(true);
  });

  it('answers 504 within the response timeout to a request waiting for a member connection held by another', async () => {
    const reader = await member((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    reader.server.requestTimeout = 0;
    const gw = await startGateway(
      { 'app.test': { members: [reader.address] } },
      { limits: { upstreamMaxConnections: 1, idleTimeoutMs: 5_000, upstreamResponseTimeoutMs: 500 } },
    );
    await stalledUpload(gw.port);
    await waitFor(() => reader.requests.length === 1, 2_000, 'the upload at the member');
    const t0 = Date.now();
    const queued = await httpRequest(gw.port, { host: 'app.test', timeoutMs: 4_000 });
    expect(queued.status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(1_500);
    expect(queued.body).toMatch(/no connection to member/);
  });
});

describe('client connection limits', () => {
  it('refuses connections past the total limit with a 503 and a reason, and accepts again when one closes', async () => {
    const up = await member();
    const metrics = new PlaneMetrics({ membersEjected: () => 0 });
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { maxConnections: 3 }, metrics });
    const open = await Promise.all([rawConnect(gw.port), rawConnect(gw.port), rawConnect(gw.port)]);
    onTestFinished(() => open.forEach((s) => s.destroy()));
    const refused = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: app.test\r\n\r\n');
    expect(statusOf(refused)).toBe(503);
    expect(refused).toContain('3 client connections are open');
    expect(gw.logs.some((l) => l.msg === 'client connections refused')).toBe(true);
    // Operators see the refusals and the open connections (refused ones not among them) in /metrics.
    const text = await metrics.text();
    expect(text).toContain('tfgate_connections_refused_total{listener="http"} 1');
    expect(text).toContain('tfgate_active_connections{listener="http"} 3');
    open[0]!.destroy();
    await once(open[0]!, 'close');
    // The gateway sees the close a moment after the client does.
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = statusOf(await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n'));
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(status).toBe(200);
  });

  it('limits connections per client address without refusing other addresses', async () => {
    const up = await member();
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { maxConnectionsPerClient: 2 } });
    const open = await Promise.all([rawConnect(gw.port), rawConnect(gw.port)]);
    onTestFinished(() => open.forEach((s) => s.destroy()));
    const refused = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: app.test\r\n\r\n');
    expect(statusOf(refused)).toBe(503);
    expect(refused).toMatch(/2 connections from [0-9.:f]+ are open/);
    // Another loopback address is another client.
    const other = connect({ port: gw.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    other.on('error', () => {});
    onTestFinished(() => {
      other.destroy();
    });
    await once(other, 'connect');
    other.write('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n');
    expect(statusOf(await readUntil(other, (t) => t.includes('hello from')))).toBe(200);
  });
});

describe('idle timeout', () => {
  it('closes an idle keep-alive connection after the idle timeout, not before', async () => {
    const up = await member();
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { idleTimeoutMs: 400 } });
    const socket = await rawConnect(gw.port);
    onTestFinished(() => {
      socket.destroy();
    });
    socket.write('GET / HTTP/1.1\r\nHost: app.test\r\n\r\n');
    await readUntil(socket, (t) => t.includes('hello from'));
    const t0 = Date.now();
    await once(socket, 'close');
    const idle = Date.now() - t0;
    expect(idle).toBeGreaterThan(300);
    expect(idle).toBeLessThan(2_000);
  });
});
