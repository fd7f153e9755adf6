import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { rawConnect, readUntil, statusOf } from '../helpers/http.js';
import { deadAddress, startRawUpstream, startUpstream } from '../helpers/upstream.js';
import type { TestUpstream } from '../helpers/upstream.js';
import { memberOf, startGateway, waitFor } from './harness.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** One WebSocket frame with a payload under 126 bytes; masked as a client must send it. */
function frame(payload: string, masked: boolean): Buffer {
  const data = Buffer.from(payload);
  const mask = masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0);
  const body = masked ? data.map((b, i) => b ^ mask[i % 4]!) : data;
  return Buffer.concat([Buffer.from([0x81, (masked ? 0x80 : 0) | data.length]), mask, Buffer.from(body)]);
}

/** Decodes one short frame (masked or not) to its text. */
function unframe(buf: Buffer): string {
  const masked = (buf[1]! & 0x80) !== 0;
  const length = buf[1]! & 0x7f;
  const mask = masked ? buf.subarray(2, 6) : undefined;
  const payload = buf.subarray(masked ? 6 : 2, (masked ? 6 : 2) + length);
  return Buffer.from(mask ? payload.map((b, i) => b ^ mask[i % 4]!) : payload).toString();
}

/** A WebSocket echo server on node:http's 'upgrade' event; answers 403 to path /forbidden. */
async function echoUpstream(): Promise<TestUpstream & { sockets: Set<Socket> }> {
  const upstream = await startUpstream((_req, res) => res.end('plain'));
  const sockets = new Set<Socket>();
  upstream.server.on('upgrade', (req, socket: Socket) => {
    upstream.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    socket.on('error', () => {});
    if (req.url === '/forbidden') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}${GUID}`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('data', (chunk: Buffer) => socket.write(frame(unframe(chunk), false)));
    socket.on('end', () => socket.end()); // as WebSocket servers do: the peer's FIN ends the connection
  });
  onTestFinished(() => upstream.close());
  return Object.assign(upstream, { sockets });
}

function handshake(host: string, path = '/chat'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n`;
}

/** Everything the gateway sends on `socket` until it closes the connection; rejects after `timeoutMs`. */
function answerOf(socket: Socket, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no end of answer in ${timeoutMs} ms; got ${JSON.stringify(text.slice(0, 300))}`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.once('end', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** A raw TCP member closed when the test finishes. */
async function rawMember(onConnection: (socket: Socket) => void): Promise<Awaited<ReturnType<typeof startRawUpstream>>> {
  const member = await startRawUpstream(onConnection);
  onTestFinished(() => member.close());
  return member;
}

async function connectClient(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  onTestFinished(() => {
    socket.destroy();
  });
  return socket;
}

describe('gateway WebSocket upgrades', () => {
  it('tunnels a WebSocket both ways, with our forwarded headers and the Host rewrite', async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address], rewrite: 'internal.ws' } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const head = await readUntil(client, (t) => t.includes('\r\n\r\n'));
    expect(statusOf(head)).toBe(101);
    expect(head.toLowerCase()).toContain(`sec-websocket-accept: ${createHash('sha1').update(KEY + GUID).digest('base64')}`.toLowerCase());
    const seen = upstream.requests[0]!.headers;
    expect(seen.host).toBe('internal.ws');
    expect(seen['x-forwarded-for']).toBe('198.51.100.1, 127.0.0.1');
    expect(seen['x-forwarded-host']).toBe('ws.test');
    expect(upstream.requests[0]!.url).toBe('/chat');

    const reply = once(client, 'data');
    client.write(frame('hello over the gateway', true));
    expect(unframe((await reply)[0] as Buffer)).toBe('hello over the gateway');
  });

  it('closes the member side when the client goes away, and releases the member', async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    await readUntil(client, (t) => t.includes('\r\n\r\n'));
    await waitFor(() => upstream.sockets.size === 1, 3_000, 'member socket');
    expect(memberOf(gw, 'ws.test', upstream.address).inFlight).toBe(1);
    client.destroy();
    await waitFor(() => upstream.sockets.size === 0, 3_000, 'member socket to close');
    await waitFor(() => memberOf(gw, 'ws.test', upstream.address).inFlight === 0, 3_000, 'inFlight back to 0');
  });

  it('closes a tunnel after the tunnel idle timeout without traffic either way, both sides, and releases the member', async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address] } }, { limits: { tunnelIdleTimeoutMs: 600 } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    await readUntil(client, (t) => t.includes('\r\n\r\n'));
    await waitFor(() => upstream.sockets.size === 1, 3_000, 'member socket');
    const [memberSide] = upstream.sockets;
    const member = memberOf(gw, 'ws.test', upstream.address);
    let closedAt = 0;
    client.once('close', () => (closedAt = Date.now()));
    const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    // Traffic keeps the tunnel open well past the timeout: first the client speaking (and the echo)...
    for (let i = 0; i < 8; i++) {
      const reply = once(client, 'data');
      client.write(frame(`ping ${i}`, true));
      expect(unframe((await reply)[0] as Buffer)).toBe(`ping ${i}`);
      await pause(100);
    }
    // ...then only the member, the client silent.
    let lastTraffic = 0;
    for (let i = 0; i < 8; i++) {
      await pause(100);
      const pushed = once(client, 'data');
      memberSide!.write(frame(`push ${i}`, false));
      expect(unframe((await pushed)[0] as Buffer)).toBe(`push ${i}`);
      lastTraffic = Date.now();
    }
    expect(closedAt).toBe(0);
    expect(member.inFlight).toBe(1);
    // Silence: both sides closed once the timeout has passed, and counted out as other tunnel closes are.
    await waitFor(() => closedAt !== 0, 3_000, 'the client side to close');
    expect(closedAt - lastTraffic).toBeGreaterThanOrEqual(500);
    await waitFor(() => upstream.sockets.size === 0, 3_000, 'the member side to close');
    await waitFor(() => member.inFlight === 0, 3_000, 'inFlight back to 0');
    expect(gw.logs.some((l) => l.msg === 'websocket tunnel idle, closed' && l.fqdn === 'ws.test' && l.idleMs === 600)).toBe(true);
  });

  it('closes the client when the member goes away', async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    await readUntil(client, (t) => t.includes('\r\n\r\n'));
    await waitFor(() => upstream.sockets.size === 1, 3_000, 'member socket');
    const closed = once(client, 'close');
    for (const s of upstream.sockets) s.destroy();
    await closed;
  });

  it('refuses an upgrade to an unknown host with 404 on the socket', async () => {
    const gw = await startGateway({});
    const client = await connectClient(gw.port);
    client.write(handshake('nowhere.test'));
    const closed = once(client, 'close');
    const text = await readUntil(client, (t) => t.includes('nowhere.test'));
    expect(statusOf(text)).toBe(404);
    await closed;
  });

  it('answers 502 on the socket when the member is down, and ejects it', async () => {
    const dead = await deadAddress();
    const gw = await startGateway({ 'ws.test': { members: [dead] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const text = await readUntil(client, (t) => t.includes('\r\n\r\n') && t.includes('\n', t.indexOf('\r\n\r\n') + 4));
    expect(statusOf(text)).toBe(502);
    expect(text).toContain('every member of the cluster for ws.test is down');
    expect(memberOf(gw, 'ws.test', dead).isAvailable(Date.now())).toBe(false);
    expect(gw.logs.some((l) => l.msg === 'request failed' && l.code === 'GW_ALL_MEMBERS_DOWN' && l.upgrade === 'websocket')).toBe(true);
    await waitFor(() => memberOf(gw, 'ws.test', dead).inFlight === 0, 3_000, 'inFlight back to 0');
  });

  it("passes the member's non-101 answer back", async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test', '/forbidden'));
    const text = await readUntil(client, (t) => t.endsWith('nope'));
    expect(statusOf(text)).toBe(403);
  });

  it('serves a non-WebSocket upgrade (h2c) as a plain request without the Upgrade', async () => {
    const upstream = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [upstream.address] } });
    const client = await connectClient(gw.port);
    client.write('GET /x HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
    const text = await readUntil(client, (t) => t.endsWith('plain'));
    expect(statusOf(text)).toBe(200);
    expect(upstream.requests[0]!.headers.upgrade).toBeUndefined();
    expect(upstream.requests[0]!.headers['http2-settings']).toBeUndefined();
  });
});

describe('gateway WebSocket upgrades to failing members (errors mapped as for plain requests)', () => {
  it('answers 504 after the upstream response timeout when a member accepts but never answers the upgrade, and closes that connection', async () => {
    const silent = await rawMember(() => {});
    // A connect timeout far above the response timeout: the 504 must come from the response timeout alone.
    const gw = await startGateway({ 'ws.test': { members: [silent.address] } }, { limits: { upstreamConnectTimeoutMs: 5_000, upstreamResponseTimeoutMs: 300 } });
    const client = await connectClient(gw.port);
    const t0 = Date.now();
    client.write(handshake('ws.test'));
    await waitFor(() => silent.connections.size === 1, 3_000, 'the member connection');
    const answer = await answerOf(client, 3_000);
    const elapsed = Date.now() - t0;
    expect(statusOf(answer)).toBe(504);
    expect(answer).toContain(`504 Gateway Timeout: member ${silent.address} sent no response headers in time\n`);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
    await waitFor(() => silent.connections.size === 0, 3_000, 'the member connection to close');
    expect(silent.received.join('')).toContain('GET /chat HTTP/1.1');
    const member = memberOf(gw, 'ws.test', silent.address);
    await waitFor(() => member.inFlight === 0, 3_000, 'inFlight back to 0');
    expect(member.isAvailable(Date.now())).toBe(true); // a slow member is not ejected, as for plain requests
    expect(gw.logs.some((l) => l.msg === 'request failed' && l.code === 'GW_UPSTREAM_TIMEOUT' && l.status === 504 && l.upgrade === 'websocket')).toBe(true);
  });

  it('retries the upgrade on another member when one refuses the connection, and ejects the one that refused', async () => {
    const dead = await deadAddress();
    const live = await echoUpstream();
    // A fresh cluster's first pick is its first member: the dead one.
    const gw = await startGateway({ 'ws.test': { members: [dead, live.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const head = await readUntil(client, (t) => t.includes('\r\n\r\n'));
    expect(statusOf(head)).toBe(101);
    const reply = once(client, 'data');
    client.write(frame('after a retry', true));
    expect(unframe((await reply)[0] as Buffer)).toBe('after a retry');
    const refused = memberOf(gw, 'ws.test', dead);
    expect(refused.isAvailable(Date.now())).toBe(false);
    expect(refused.consecutiveFailures).toBe(1);
    expect(refused.inFlight).toBe(0);
    expect(memberOf(gw, 'ws.test', live.address).inFlight).toBe(1);
    expect(gw.logs.some((l) => l.msg === 'member failed, retrying on another' && l.member === dead && l.retry === live.address)).toBe(true);
  });

  it('spends the retry budget plain requests share: with none left, a refused upgrade is answered, not retried', async () => {
    const dead = await deadAddress();
    const live = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [dead, live.address] } }, { limits: { retryBudgetPercent: 0 } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const answer = await answerOf(client, 3_000);
    expect(statusOf(answer)).toBe(502);
    expect(answer).toContain(`cannot connect to member ${dead}`);
    expect(live.requests).toHaveLength(0);
    expect(gw.gateway.retryBudget.denied).toBe(1);
    expect(gw.logs.some((l) => l.msg === 'member failed, retry budget spent' && l.upgrade === 'websocket')).toBe(true);
  });

  it('answers 502 with the reason when a member resets the connection before the 101, without retrying (the upgrade was sent) or ejecting it', async () => {
    const resetting = await rawMember((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const other = await echoUpstream();
    const gw = await startGateway({ 'ws.test': { members: [resetting.address, other.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const answer = await answerOf(client, 3_000);
    expect(statusOf(answer)).toBe(502);
    expect(answer).toContain(`member ${resetting.address} failed`);
    expect(answer).toContain('ECONNRESET');
    expect(other.requests).toHaveLength(0);
    const member = memberOf(gw, 'ws.test', resetting.address);
    expect(member.isAvailable(Date.now())).toBe(true);
    await waitFor(() => member.inFlight === 0, 3_000, 'inFlight back to 0');
  });

  it('answers 502 "invalid HTTP response" when a member answers the upgrade with something that is not HTTP', async () => {
    const garbage = await rawMember((socket) => socket.once('data', () => socket.end('SMTP ready\r\n\r\n')));
    const gw = await startGateway({ 'ws.test': { members: [garbage.address] } });
    const client = await connectClient(gw.port);
    client.write(handshake('ws.test'));
    const answer = await answerOf(client, 3_000);
    expect(statusOf(answer)).toBe(502);
    expect(answer).toContain(`502 Bad Gateway: member ${garbage.address} sent an invalid HTTP response`);
    expect(memberOf(gw, 'ws.test', garbage.address).isAvailable(Date.now())).toBe(true);
  });

  it("relays a chunked non-101 answer with framing an HTTP client can read", async () => {
    const refusing = await rawMember((socket) =>
      socket.once('data', () => socket.write('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n')),
    );
    const gw = await startGateway({ 'ws.test': { members: [refusing.address] } });
    const req = request({
      host: '127.0.0.1',
      port: gw.port,
      path: '/chat',
      headers: { host: 'ws.test', upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': KEY, 'sec-websocket-version': '13' },
    });
    const failed: Error[] = [];
    req.on('error', (err) => failed.push(err)); // a framing error surfaces here, and as the body's 'aborted'
    onTestFinished(() => {
      req.destroy();
    });
    req.end();
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toBe('text/plain');
    let body = '';
    res.setEncoding('latin1');
    res.on('data', (chunk: string) => (body += chunk));
    await once(res, 'end');
    expect(body).toBe('hello world');
    expect(failed).toEqual([]);
  });
});
