import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { rawConnect, readUntil } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';
import { memberOf, startGateway, waitFor } from './harness.js';

/** A member that counts the requests it is answering at once (`done` ends one before its answer is written). */
async function countingMember(answer: (req: IncomingMessage, res: ServerResponse, done: () => void) => void) {
  const seen = { active: 0, maxActive: 0 };
  const upstream = await startUpstream((req, res) => {
    seen.active++;
    seen.maxActive = Math.max(seen.maxActive, seen.active);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      seen.active--;
    };
    res.on('close', finish); // answered, or the gateway gave up on it
    answer(req, res, finish);
  });
  onTestFinished(() => upstream.close());
  return Object.assign(upstream, { seen });
}

async function connectClient(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  onTestFinished(() => {
    socket.destroy();
  });
  return socket;
}

function pipelined(count: number, pad = 0): string {
  const padding = pad > 0 ? `X-Pad: ${'p'.repeat(pad)}\r\n` : '';
  return Array.from({ length: count }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: app.test\r\n${padding}\r\n`).join('');
}

const statuses = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

describe('pipelined requests', () => {
  it('forwards the requests a client pipelines one at a time, and answers them all in order', async () => {
    const member = await countingMember((req, res, done) =>
      setTimeout(() => {
        done();
        res.end(`answer ${req.url}`);
      }, 5),
    );
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const client = await connectClient(gw.port);
    const count = 40; // more than may wait unread, so reading pauses and resumes on the way
    client.write(pipelined(count));
    const text = await readUntil(client, (t) => t.endsWith(`answer /${count - 1}`), 10_000);
    expect(statuses(text)).toEqual(Array(count).fill(200));
    expect([...text.matchAll(/answer \/(\d+)/g)].map((m) => Number(m[1]))).toEqual([...Array(count).keys()]);
    expect(member.requests).toHaveLength(count);
    expect(member.seen.maxActive).toBe(1);
    await waitFor(() => gw.gateway.inFlight === 0, 2_000, 'every request counted out');
  });

  it('drops the requests still waiting when the client leaves: none reaches the member, all are counted out', async () => {
    const member = await countingMember(() => {}); // never answers
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const client = await connectClient(gw.port);
    client.write(pipelined(5));
    await waitFor(() => member.requests.length > 0 && gw.gateway.inFlight === 5, 3_000, 'the first request at the member, all five read');
    client.destroy();
    await waitFor(() => gw.gateway.inFlight === 0, 3_000, 'every request counted out');
    await waitFor(() => member.seen.active === 0, 3_000, 'the request at the member given up');
    expect(memberOf(gw, 'app.test', member.address).inFlight).toBe(0);
    expect(member.requests.map((r) => r.url)).toEqual(['/0']);
    expect(member.seen.maxActive).toBe(1);
    const lines = gw.logs.filter((l) => l.msg === 'request');
    expect(lines.map((l) => [l.path, l.status, l.aborted])).toEqual([0, 1, 2, 3, 4].map((i) => [`/${i}`, 499, true]));
  });

  it('stops reading a connection while too many of its requests wait, and drops them once it is gone', async () => {
    let release: (() => void) | undefined;
    let holding = true;
    const member = await countingMember((req, res, done) => {
      const answer = (): void => {
        done();
        res.end(`answer ${req.url}`);
      };
      if (holding) release = answer;
      else answer();
    });
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const client = await connectClient(gw.port);
    // Thousands of 1 KB requests in one write: far more than one read of the socket holds.
    const count = 8_000;
    client.write(pipelined(count, 1_000));
    await waitFor(() => member.requests.length === 1, 3_000, 'the first request at the member');
    // A bounded look: everything written could be read and parsed in far less than this, as it was
    // before the fix (every request then went to the member at once, up to its in-flight cap).
    let maxTracked = 0;
    const until = Date.now() + 500;
    while (Date.now() < until) {
      maxTracked = Math.max(maxTracked, gw.gateway.inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(maxTracked).toBeGreaterThan(1);
    expect(maxTracked).toBeLessThan(300);
    expect(member.requests).toHaveLength(1);

    client.destroy();
    holding = false;
    release?.();
    await waitFor(() => gw.gateway.inFlight === 0, 5_000, 'every request counted out');
    // The client's FIN sits behind the requests the gateway has not read, so it learns the client is
    // gone only from writing: the answer to /0 draws a reset, and the one request run after it (already
    // on its way to the member) fails to be written. Nothing else is forwarded.
    expect(member.requests.length).toBeLessThanOrEqual(2);
    expect(member.seen.maxActive).toBe(1);
  });

  it('closes a connection that makes more than 128 requests wait, before any of them reaches a member', async () => {
    const member = await countingMember(() => {}); // never answers: the first request holds the connection's turn
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const client = await connectClient(gw.port);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    // 2,000 minimal requests in one write: one read of the socket parses far more than 128 of them.
    client.write(pipelined(2_000));
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the connection stayed open')), 3_000))]);
    await waitFor(() => gw.gateway.inFlight === 0, 5_000, 'every request counted out');
    expect(member.requests.length).toBeLessThanOrEqual(1);
  });

  it.each([
    ['h2c', ''],
    ['websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'],
  ])('closes a connection that pipelines an Upgrade: %s behind a request still being answered, and keeps serving', async (upgrade, extra) => {
    let release: (() => void) | undefined;
    const member = await countingMember((req, res, done) => {
      release = () => {
        done();
        res.end('late');
      };
    });
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const client = await connectClient(gw.port);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.write(`GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\nGET /up HTTP/1.1\r\nHost: app.test\r\nUpgrade: ${upgrade}\r\nConnection: Upgrade\r\n${extra}\r\n`);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the connection stayed open')), 3_000))]);
    release?.();
    await waitFor(() => gw.gateway.inFlight === 0, 5_000, 'every request counted out');
    const next = await connectClient(gw.port);
    next.write('GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n');
    const answer = readUntil(next, (text) => text.includes('\r\n\r\n'), 3_000);
    await waitFor(() => member.requests.some((r) => r.url === '/after'), 3_000, 'the next request at the member');
    release?.();
    expect(statuses(await answer)).toEqual([200]);
  });
});
