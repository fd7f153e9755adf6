import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { rawConnect, readUntil, statusOf } from '../helpers/http.js';
import { deadAddress, startUpstream } from '../helpers/upstream.js';
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
    expect(memberOf(gw, 'ws.test', dead).isAvailable(Date.now())).toBe(false);
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
