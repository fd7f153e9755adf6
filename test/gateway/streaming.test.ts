import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { httpGet, httpRequest } from '../helpers/http.js';
import { deadAddress, startUpstream } from '../helpers/upstream.js';
import { memberOf, startGateway, waitFor } from './harness.js';

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const u = await startUpstream(handler);
  onTestFinished(() => u.close());
  return u;
}

describe('gateway streaming', () => {
  it('streams a request body of several MB to the member and its echo back', async () => {
    const member = await upstream((req, res) => req.pipe(res));
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const body = randomBytes(8 * 1024 * 1024);
    const req = request({ port: gw.port, host: '127.0.0.1', method: 'POST', path: '/echo', headers: { host: 'app.test' }, agent: false });
    req.end(body);
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of res) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
    expect(res.statusCode).toBe(200);
    expect(length).toBe(body.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('relays each part of a body as it comes, both ways (no whole-body buffering)', async () => {
    let releaseResponse!: () => void;
    const responseReleased = new Promise<void>((resolve) => (releaseResponse = resolve));
    let memberGotFirstPart!: () => void;
    const firstPartArrived = new Promise<void>((resolve) => (memberGotFirstPart = resolve));
    const member = await upstream((req, res) => {
      req.once('data', () => memberGotFirstPart());
      res.writeHead(200);
      res.write('first;');
      void responseReleased.then(() => res.end('second'));
    });
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const req = request({ port: gw.port, host: '127.0.0.1', method: 'POST', headers: { host: 'app.test' }, agent: false });
    req.write('part one');
    await firstPartArrived; // the member has the start of a body the client has not finished
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    const [first] = (await once(res, 'data')) as [Buffer];
    expect(first.toString()).toBe('first;'); // the client has the start of a response the member has not finished
    releaseResponse();
    req.end('part two');
    let rest = '';
    for await (const chunk of res) rest += String(chunk);
    expect(rest).toBe('second');
  });

  it('retries a request with a body on another member when the first refuses the connection', async () => {
    const live = await upstream((req, res) => req.pipe(res));
    const gw = await startGateway({ 'app.test': { members: [await deadAddress(), live.address] } });
    for (let i = 0; i < 2; i++) {
      const res = await httpRequest(gw.port, { method: 'POST', host: 'app.test', body: `payload ${i}` });
      expect(res.status).toBe(200);
      expect(res.body).toBe(`payload ${i}`);
    }
  });

  it('aborts the member request when the client goes away and releases the in-flight count', async () => {
    const member = await upstream(() => {}); // never answers
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n');
    await waitFor(() => member.requests.length === 1, 3_000, 'the member to get the request');
    const upstreamMember = memberOf(gw, 'app.test', member.address);
    expect(upstreamMember.inFlight).toBe(1);
    const used = [...member.connections];
    socket.destroy();
    await waitFor(() => upstreamMember.inFlight === 0, 3_000, 'inFlight to drop');
    // undici may open a fresh idle connection afterwards; what matters is that the aborted one is gone.
    await waitFor(() => used.every((s) => s.destroyed), 3_000, 'the member connection to be closed');
    await waitFor(() => gw.gateway.inFlight === 0, 3_000, 'gateway inFlight to drop');
    expect(gw.logs.find((l) => l.msg === 'request')).toMatchObject({ status: 499, aborted: true });
  });

  it('does not leave a keep-alive connection stuck when the member answers before the upload is complete', async () => {
    const member = await upstream((req, res) => {
      if (req.method === 'POST') res.writeHead(401, { 'content-length': '5' }).end('nope\n');
      else res.end(`hello ${req.url}`);
    });
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    onTestFinished(() => {
      socket.destroy();
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.write(`POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 200000\r\n\r\n${'a'.repeat(100_000)}`);
    await waitFor(() => text.includes('nope'), 3_000, 'the early answer');
    socket.write(`${'a'.repeat(100_000)}GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n`);
    // Either the rest of the body is read and /next answered, or the early answer said close and the connection closes.
    await waitFor(() => text.includes('hello /next') || socket.destroyed || socket.readableEnded, 3_000, 'the connection to move on');
    expect(text.startsWith('HTTP/1.1 401')).toBe(true);
    if (!text.includes('hello /next')) expect(text.split('\r\n\r\n')[0]).toMatch(/connection: close/i);
    await waitFor(() => gw.gateway.inFlight === 0, 3_000, 'gateway inFlight to drop');
  });
});

describe('gateway close', () => {
  it('stops accepting, closes idle connections at once, and lets an in-flight request finish', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const member = await upstream((req, res) => {
      if (req.url === '/slow') void released.then(() => res.end('finished'));
      else res.end('quick');
    });
    const gw = await startGateway({ 'app.test': { members: [member.address] } });

    // An idle keep-alive connection from an earlier request.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());
    const idle = request({ port: gw.port, host: '127.0.0.1', headers: { host: 'app.test' }, agent });
    idle.end();
    const [idleSocket] = (await once(idle, 'socket')) as [import('node:net').Socket];
    const idleClosed = once(idleSocket, 'close');
    const [idleRes] = (await once(idle, 'response')) as [IncomingMessage];
    idleRes.resume();
    await once(idleRes, 'end');

    const slow = httpRequest(gw.port, { host: 'app.test', path: '/slow' });
    await waitFor(() => member.requests.some((r) => r.url === '/slow'), 3_000, 'the slow request to arrive');
    expect(gw.gateway.inFlight).toBe(1);

    const closing = gw.gateway.close(5_000);
    await idleClosed; // at once, not after the idle timeout
    const refused = connect(gw.port, '127.0.0.1');
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');

    release();
    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body).toBe('finished');
    await closing;
    expect(gw.gateway.inFlight).toBe(0);
    await gw.gateway.close(5_000); // idempotent
  });

  it('cuts requests still running when the drain time is up', async () => {
    const member = await upstream(() => {}); // never answers
    const gw = await startGateway({ 'app.test': { members: [member.address] } }, { limits: { upstreamResponseTimeoutMs: 10_000 } });
    const pending = httpGet(gw.port, 'app.test').then(
      () => 'answered',
      () => 'cut',
    );
    await waitFor(() => member.requests.length === 1, 3_000, 'the request to arrive');
    const t0 = Date.now();
    await gw.gateway.close(300);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(await pending).toBe('cut');
  });
});
