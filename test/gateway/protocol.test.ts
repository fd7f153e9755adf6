import { describe, expect, it, onTestFinished } from 'vitest';
import { httpRequest, rawConnect, rawRequest, readUntil, statusOf } from '../helpers/http.js';
import { startRawUpstream, startUpstream } from '../helpers/upstream.js';
import { startGateway, waitFor } from './harness.js';

/** A member that records every byte it receives and answers 200 to whatever arrives. */
async function recordingMember() {
  const member = await startRawUpstream((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')));
  onTestFinished(() => member.close());
  return member;
}

describe('gateway request framing (RFC 9112 §6) and limits', () => {
  const refused: Record<string, [string, number]> = {
    'Content-Length with Transfer-Encoding': ['POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    'differing Content-Lengths': ['POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 400],
    'a list of Content-Lengths': ['POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 5\r\n\r\nhello', 400],
    'Transfer-Encoding: gzip (not final chunked)': ['POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\nhello', 400],
    'Transfer-Encoding: chunked, gzip': ['POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello', 400],
    'Transfer-Encoding: gzip, chunked (coding we cannot forward)': ['POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    'Transfer-Encoding in HTTP/1.0': ['POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    'obsolete line folding': ['GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n b\r\n\r\n', 400],
    'CONNECT': ['CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n', 501],
  };
  for (const [name, [bytes, status]] of Object.entries(refused)) {
    it(`refuses ${name} with ${status}, and forwards nothing`, async () => {
      const member = await recordingMember();
      const gw = await startGateway({ 'app.test': { members: [member.address] } });
      const raw = await rawRequest(gw.port, bytes);
      expect(statusOf(raw)).toBe(status);
      expect(raw).toMatch(/connection: close/i);
      expect(member.received).toHaveLength(0);
    });
  }

  it('still forwards a well-formed chunked body', async () => {
    const member = await recordingMember();
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const raw = await rawRequest(gw.port, 'POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    expect(Buffer.concat(member.received).toString()).toContain('hello');
  });

  it('answers 431 to a header block over the size limit, never truncating it', async () => {
    const member = await recordingMember();
    const gw = await startGateway({ 'app.test': { members: [member.address] } }, { limits: { maxHeaderBytes: 2_048 } });
    const raw = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: ${'a'.repeat(4_000)}\r\n\r\n`);
    expect(statusOf(raw)).toBe(431);
    expect(member.received).toHaveLength(0);
    expect(gw.logs.some((l) => l.code === 'GW_HEADERS_TOO_LARGE')).toBe(true);
  });

  it('answers 431 to more header lines than the count limit', async () => {
    const member = await recordingMember();
    const gw = await startGateway({ 'app.test': { members: [member.address] } }, { limits: { maxHeaderCount: 20 } });
    const many = Array.from({ length: 25 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    const raw = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: app.test\r\n${many}\r\n`);
    expect(statusOf(raw)).toBe(431);
    expect(raw).toContain('26 header lines');
    expect(member.received).toHaveLength(0);
    const few = Array.from({ length: 18 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    expect(statusOf(await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n${few}\r\n`))).toBe(200);
  });

  it('cuts a client that sends its headers too slowly near the header timeout', async () => {
    const gw = await startGateway({}, { limits: { headersTimeoutMs: 400 } });
    const socket = await rawConnect(gw.port);
    onTestFinished(() => {
      socket.destroy();
    });
    const t0 = Date.now();
    socket.write('GET / HTTP/1.1\r\nHost: app.test\r\n');
    const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 50);
    onTestFinished(() => clearInterval(trickle));
    const raw = await readUntil(socket, (text) => text.includes('\r\n\r\n'), 3_000);
    clearInterval(trickle);
    expect(statusOf(raw)).toBe(408);
    expect(Date.now() - t0).toBeLessThan(1_200);
  });

  it('forwards no pipelined request read after a response that closes the connection (RFC 9112 §9.6)', async () => {
    const seen: string[] = [];
    const member = await startUpstream((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      setTimeout(() => res.end('ok'), req.url === '/slow' ? 300 : 0);
    });
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    // The 400 (two Host lines) waits behind the slow answer, so the DELETE is read before the connection closes.
    const refused = await rawRequest(
      gw.port,
      'GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n' +
        'GET /bad HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\n' +
        'DELETE /after-error HTTP/1.1\r\nHost: app.test\r\n\r\n',
      3_000,
    );
    expect([...refused.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200', '400']);
    await waitFor(() => gw.gateway.inFlight === 0, 2_000, 'every request counted out');
    expect(seen).toEqual(['GET /slow']);
    // The client itself asking to close counts the same, and its answer still goes out whole.
    const closed = await rawRequest(
      gw.port,
      'GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n' + 'DELETE /after-close HTTP/1.1\r\nHost: app.test\r\n\r\n',
      3_000,
    );
    expect(statusOf(closed)).toBe(200);
    expect(closed.endsWith('ok')).toBe(true);
    await waitFor(() => gw.gateway.inFlight === 0, 2_000, 'every request counted out');
    expect(seen).toEqual(['GET /slow', 'GET /slow']);
  });

  for (const [status, reason] of [[304, 'Not Modified'], [204, 'No Content']] as const) {
    it(`relays a ${status} that carries a Content-Length and no body, and keeps the connection`, async () => {
      // RFC 9110 §8.6: a 304 may give the length the full representation would have.
      const member = await startRawUpstream((socket) =>
        socket.on('data', () => socket.write(`HTTP/1.1 ${status} ${reason}\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n`)),
      );
      onTestFinished(() => member.close());
      const gw = await startGateway({ 'app.test': { members: [member.address] } });
      const socket = await rawConnect(gw.port);
      onTestFinished(() => {
        socket.destroy();
      });
      for (let i = 0; i < 2; i++) {
        socket.write('GET /logo.png HTTP/1.1\r\nHost: app.test\r\nIf-None-Match: "v1"\r\n\r\n');
        const head = await readUntil(socket, (t) => t.includes('\r\n\r\n'), 3_000);
        expect(statusOf(head)).toBe(status);
        expect(head).toMatch(/etag: "v1"/i);
      }
      expect(gw.logs.some((l) => l.code === 'GW_BAD_GATEWAY')).toBe(false);
    });
  }

  it('survives garbage and resets from clients', async () => {
    const gw = await startGateway({});
    expect(statusOf(await rawRequest(gw.port, 'NOT HTTP AT ALL\r\n\r\n'))).toBe(400);
    const socket = await rawConnect(gw.port);
    socket.write('GET / HTTP/1.1\r\nHo');
    socket.resetAndDestroy();
    const res = await httpRequest(gw.port, { host: 'still.alive.test' });
    expect(res.status).toBe(404);
  });
});
