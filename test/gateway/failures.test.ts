import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { connect } from 'node:net';
import { httpGet, rawRequest, readUntil, statusOf } from '../helpers/http.js';
import { startRawUpstream, startUpstream } from '../helpers/upstream.js';
import { memberOf, startGateway, waitFor } from './harness.js';

const GET = 'GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n';

describe('members failing in the middle of things', () => {
  it('cuts the client cleanly when a member dies mid-response, and keeps serving', async () => {
    const dying = await startRawUpstream((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of the body');
        setTimeout(() => socket.destroy(), 50);
      });
    });
    const gw = await startGateway({ 'app.test': { members: [dying.address] } });
    const started = Date.now();
    const answer = await rawRequest(gw.port, GET, 5_000);
    // The head and what came of the body were relayed; then the connection was closed, not left hanging.
    expect(statusOf(answer)).toBe(200);
    expect(answer).toContain('only part of the body');
    expect(answer.length).toBeLessThan(answer.indexOf('only part') + 100);
    expect(Date.now() - started).toBeLessThan(3_000);
    await waitFor(() => memberOf(gw, 'app.test', dying.address).inFlight === 0, 3_000, 'the member to be released');
    const healthy = await startUpstream((_req, res) => res.end('fine'));
    gw.publish({ 'app.test': { members: [healthy.address] } });
    expect((await httpGet(gw.port, 'app.test')).body).toBe('fine');
  });

  it('bounds a member that sends its head and then nothing (half-open, silent)', async () => {
    const silent = await startRawUpstream((socket) => {
      socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
    });
    const gw = await startGateway({ 'app.test': { members: [silent.address] } }, { limits: { idleTimeoutMs: 400, upstreamResponseTimeoutMs: 400 } });
    const started = Date.now();
    const answer = await rawRequest(gw.port, GET, 10_000);
    expect(statusOf(answer)).toBe(200);
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor(() => memberOf(gw, 'app.test', silent.address).inFlight === 0, 3_000, 'the member to be released');
    expect(gw.logs.some((line) => line.msg === 'request failed' || (line.msg === 'request' && line.aborted === true))).toBe(true);
  });

  it('answers 502 (or retries elsewhere) when a member closes or resets the connection without answering', async () => {
    const closing = await startRawUpstream((socket) => socket.once('data', () => socket.end()));
    const resetting = await startRawUpstream((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const gw = await startGateway({ 'closing.test': { members: [closing.address] }, 'resetting.test': { members: [resetting.address] } });
    for (const host of ['closing.test', 'resetting.test']) {
      const started = Date.now();
      const answer = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(statusOf(answer)).toBe(502);
      expect(Date.now() - started).toBeLessThan(3_000);
    }
    const good = await startUpstream((_req, res) => res.end('other member'));
    gw.publish({ 'app.test': { members: [closing.address, good.address] } });
    // A bodiless GET the member closed on before answering goes to the other member.
    for (let i = 0; i < 6; i++) expect((await httpGet(gw.port, 'app.test')).body).toBe('other member');
  });
});

describe('shutdown with sockets node:http no longer owns', () => {
  it('closes within the drain bound even when a client of a non-WebSocket upgrade keeps its side open', async () => {
    const member = await startUpstream((_req, res) => res.end('plain answer'));
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    // allowHalfOpen: the client does not answer the gateway's FIN with its own.
    const client = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => {});
    await once(client, 'connect');
    client.write('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
    expect(await readUntil(client, (text) => text.includes('plain answer'))).toMatch(/^HTTP\/1\.1 200/);
    // The client never closes its side; the gateway must not wait on it forever.
    const started = Date.now();
    await gw.gateway.close(500);
    expect(Date.now() - started).toBeLessThan(3_000);
    await waitFor(() => gw.gateway.inFlight === 0, 2_000, 'the request to be counted out');
    client.destroy();
  });
});
