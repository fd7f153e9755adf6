import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { httpRequest, rawConnect, readUntil, statusOf } from '../helpers/http.js';
import { startRawUpstream, startUpstream } from '../helpers/upstream.js';
import { startGateway, waitFor } from './harness.js';

async function member(handler?: Parameters<typeof startUpstream>[0]) {
  const upstream = await startUpstream(handler);
  onTestFinished(() => upstream.close());
  return upstream;
}

async function rawMember(onConnection: (socket: Socket) => void) {
  const upstream = await startRawUpstream(onConnection);
  onTestFinished(() => upstream.close());
  return upstream;
}

async function client(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  onTestFinished(() => {
    socket.destroy();
  });
  return socket;
}

/** Writes `text` again and again, as fast as the peer reads it, until the socket closes. */
function flood(socket: Socket, text: string): void {
  const block = Buffer.from(text.repeat(Math.ceil(16_384 / text.length)));
  const pump = (): void => {
    while (!socket.destroyed) if (!socket.write(block)) return void socket.once('drain', pump);
  };
  pump();
}

describe('a client that stops reading a response', () => {
  /** A member that streams a 1 GiB body as fast as it is taken; /small answers "ok". */
  async function bigMember() {
    const state = { bigClosed: false };
    const up = await member((req, res) => {
      if (req.url === '/small') return void res.end('ok');
      req.socket.on('close', () => (state.bigClosed = true));
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const total = 1 << 30;
      let sent = 0;
      res.writeHead(200, { 'content-length': String(total) });
      const pump = (): void => {
        while (!res.destroyed && sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      pump();
    });
    return { up, state, total: 1 << 30 };
  }

  it('is cut after the idle timeout, which frees the member connection for other clients', async () => {
    const { up, state, total } = await bigMember();
    const gw = await startGateway(
      { 'app.test': { members: [up.address] } },
      // One member connection: while the stalled client holds it, nobody else gets through.
      { limits: { idleTimeoutMs: 500, upstreamResponseTimeoutMs: 500, upstreamMaxConnections: 1 } },
    );
    const socket = await client(gw.port);
    socket.pause(); // read nothing
    socket.write('GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n');
    await waitFor(() => state.bigClosed, 5_000, 'the member connection to close');
    // The client sees a truncated response, then the end of the connection.
    let text = '';
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      if (text.length < 200) text += chunk.toString('latin1');
      bytes += chunk.length;
    });
    socket.resume();
    await once(socket, 'close');
    expect(statusOf(text)).toBe(200);
    expect(bytes).toBeLessThan(total);
    // Logged as an aborted response, with the reason.
    await waitFor(() => gw.logs.some((l) => l.msg === 'request' && l.aborted === true), 2_000, 'the access log line');
    const line = gw.logs.find((l) => l.msg === 'request' && l.aborted === true);
    expect(line).toMatchObject({ status: 200, code: 'GW_REQUEST_TIMEOUT' });
    expect(gw.logs.some((l) => l.code === 'GW_REQUEST_TIMEOUT' && /took none of the response for 500 ms/.test(String(l.reason)))).toBe(true);
    // The member connection is free again.
    const next = await httpRequest(gw.port, { host: 'app.test', path: '/small', timeoutMs: 3_000 });
    expect(next.status).toBe(200);
    expect(next.body).toBe('ok');
  });

  it('is not cut when it pauses for less than the idle timeout', async () => {
    const body = Buffer.alloc(8 << 20, 0x63);
    const up = await member((_req, res) => res.end(body));
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { idleTimeoutMs: 1_000 } });
    const socket = await client(gw.port);
    socket.pause();
    socket.write('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    for (let i = 0; i < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      socket.resume();
      await once(socket, 'data');
      socket.pause();
    }
    socket.resume();
    await once(socket, 'close');
    expect(bytes).toBeGreaterThan(body.length); // the head, and all of the body
    await waitFor(() => gw.logs.some((l) => l.msg === 'request'), 2_000, 'the access log line');
    expect(gw.logs.find((l) => l.msg === 'request')).not.toHaveProperty('aborted');
  });
});

describe('a member that sends informational (1xx) responses', () => {
  it('relays the final response after a few', async () => {
    const up = await member((req, res) => {
      res.writeProcessing();
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const gw = await startGateway({ 'app.test': { members: [up.address] } });
    const answer = await httpRequest(gw.port, { host: 'app.test' });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('ok');
  });

  it('answers 502 when a member sends them without end, and closes its connection', async () => {
    const flooded: Socket[] = [];
    const endless = await rawMember((socket) =>
      socket.once('data', () => {
        flooded.push(socket);
        flood(socket, 'HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n');
      }),
    );
    const gw = await startGateway({ 'app.test': { members: [endless.address] } });
    const answer = await httpRequest(gw.port, { host: 'app.test', timeoutMs: 4_000 });
    expect(answer.status).toBe(502);
    expect(answer.body).toMatch(/more than 32 informational \(1xx\) responses/);
    expect(flooded).toHaveLength(1);
    await waitFor(() => flooded[0]!.destroyed, 2_000, 'the member connection to close');
  });

  it('answers 504 when the final status is not there within the response timeout, however many 1xx came', async () => {
    const up = await member((_req, res) => {
      const hints = setInterval(() => res.writeProcessing(), 100);
      res.on('close', () => clearInterval(hints));
    });
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { upstreamResponseTimeoutMs: 600 } });
    const t0 = Date.now();
    const answer = await httpRequest(gw.port, { host: 'app.test', timeoutMs: 4_000 });
    expect(answer.status).toBe(504);
    expect(answer.body).toMatch(/informational \(1xx\) responses and no final status within 600 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
  });

  it('gives the member the response timeout from the end of a slow upload, not from its first 1xx', async () => {
    const up = await member((req, res) => {
      res.writeEarlyHints({ link: '</x>' });
      req.resume();
      req.on('end', () => res.end('done'));
    });
    const gw = await startGateway({ 'app.test': { members: [up.address] } }, { limits: { upstreamResponseTimeoutMs: 400 } });
    const socket = await client(gw.port);
    const answer = readUntil(socket, (t) => t.endsWith('done'), 5_000);
    socket.write('POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\n');
    // The upload takes twice the response timeout.
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      socket.write('x');
    }
    const text = await answer;
    expect(statusOf(text)).toBe(200);
    expect(text).toMatch(/done$/);
  });
});

describe('a chunked upload in tiny chunks', () => {
  it('goes upstream in a few large chunks, not one write per chunk', async () => {
    const chunks = 30_000;
    // A raw member that decodes the chunked body as it arrived on the wire: one frame per upstream chunk.
    const framing = await rawMember((socket) => {
      let raw = '';
      socket.on('data', (data: Buffer) => {
        raw += data.toString('latin1');
        if (!raw.endsWith('\r\n0\r\n\r\n')) return;
        let at = raw.indexOf('\r\n\r\n') + 4;
        let frames = 0;
        let body = '';
        for (;;) {
          const eol = raw.indexOf('\r\n', at);
          const size = parseInt(raw.slice(at, eol), 16);
          if (size === 0) break;
          frames++;
          body += raw.slice(eol + 2, eol + 2 + size);
          at = eol + 2 + size + 2;
        }
        const answer = JSON.stringify({ frames, body });
        socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${answer.length}\r\nConnection: close\r\n\r\n${answer}`);
      });
    });
    const gw = await startGateway({ 'app.test': { members: [framing.address] } });
    const sent = Array.from({ length: chunks }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    const socket = await client(gw.port);
    const answer = readUntil(socket, (t) => t.endsWith('}'), 10_000);
    socket.write('POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n');
    for (let at = 0; at < chunks; at += 10_000) socket.write([...sent.slice(at, at + 10_000)].map((c) => `1\r\n${c}\r\n`).join(''));
    socket.write('0\r\n\r\n');
    const text = await answer;
    expect(statusOf(text)).toBe(200);
    const { frames, body } = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { frames: number; body: string };
    expect(body).toBe(sent); // every byte, in order
    expect(frames).toBeLessThanOrEqual(chunks / 100);
  });
});
