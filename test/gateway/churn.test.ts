import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Cluster } from '../../src/control/index.js';
import { rawConnect, readUntil } from '../helpers/http.js';
import { startTestServer } from '../helpers/server.js';
import { startUpstream } from '../helpers/upstream.js';
import { startGateway } from './harness.js';

/** A member answering `stable` over HTTP and echoing raw bytes after a 101 (the gateway only tunnels them). */
async function stableMember() {
  const upstream = await startUpstream((_req, res) => res.end('stable'));
  upstream.server.on('upgrade', (req, socket: Socket) => {
    socket.on('error', () => {});
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
  });
  onTestFinished(() => upstream.close());
  return upstream;
}

/** An open WebSocket tunnel and a keep-alive connection to `host`, and checks that both still work on the same sockets. */
async function livingConnections(port: number, host: string) {
  const ws = await rawConnect(port);
  const keepAlive = await rawConnect(port);
  onTestFinished(() => {
    ws.destroy();
    keepAlive.destroy();
  });
  let closed = 0;
  ws.on('close', () => closed++);
  keepAlive.on('close', () => closed++);
  ws.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await readUntil(ws, (t) => t.startsWith('HTTP/1.1 101') && t.includes('\r\n\r\n'));
  let n = 0;
  return {
    get closed() {
      return closed;
    },
    async check(): Promise<void> {
      const message = `ping-${n++};`;
      ws.write(message);
      await readUntil(ws, (t) => t.includes(message), 2_000);
      keepAlive.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      const answer = await readUntil(keepAlive, (t) => t.endsWith('stable'), 2_000);
      if (!answer.startsWith('HTTP/1.1 200')) throw new Error(`keep-alive answer ${answer.slice(0, 40)}`);
    },
  };
}

/** Requests to `host` on a keep-alive agent until `stop()`; resolves with the count of those that were not 200 "stable". */
async function steadyTraffic(port: number, host: string, stop: () => boolean): Promise<{ sent: number; failed: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  let sent = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (!stop()) {
      sent++;
      const ok = await new Promise<boolean>((resolve) => {
        const req = request({ port, host: '127.0.0.1', headers: { host }, agent }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(res.statusCode === 200 && body === 'stable'));
        });
        req.on('error', () => resolve(false));
        req.end();
      });
      if (!ok) failed++;
    }
  };
  await Promise.all([loop(), loop(), loop()]);
  agent.destroy();
  return { sent, failed };
}

/** The heap in use after a full collection. */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('churn never hurts the living', () => {
  it('publish, change and unpublish churn from two sessions leaves a stable route’s WebSocket, keep-alive connection and traffic untouched', async () => {
    const stable = await stableMember();
    const other = await startUpstream((_req, res) => res.end('other'));
    onTestFinished(() => other.close());
    const gw = await startTestServer(['--access-log=false', '--control-rate', '100000']);
    const owner = await gw.connect('owner');
    await owner.endpointFor('test').publish(new Cluster([stable.address]), 'stable.test');
    const living = await livingConnections(gw.server.http, 'stable.test');
    await living.check();

    let churning = true;
    const traffic = steadyTraffic(gw.server.http, 'stable.test', () => !churning);
    const cycles = { count: 0 };
    const churn = async (name: string): Promise<void> => {
      const session = await gw.connect(name);
      const endpoint = session.endpointFor('test');
      for (let i = 0; i < 300; i++) {
        const cluster = new Cluster([other.address]);
        await endpoint.publish(cluster, `${name}-${i % 7}.test`);
        await cluster.add(stable.address); // a change: the stable member shared by a churned cluster
        await cluster.remove(stable.address);
        await endpoint.unpublish(cluster);
        cycles.count++;
        if (i % 50 === 0) await living.check();
      }
    };
    const t0 = Date.now();
    await Promise.all([churn('churn-a'), churn('churn-b')]);
    const seconds = (Date.now() - t0) / 1_000;
    churning = false;
    const { sent, failed } = await traffic;
    await living.check();
    expect(cycles.count).toBe(600);
    expect(failed, `${failed} of ${sent} requests to the stable route failed`).toBe(0);
    expect(sent).toBeGreaterThan(100);
    expect(living.closed).toBe(0);
    // 4 control messages per cycle: well over a hundred changes a second even on a busy machine.
    expect((cycles.count * 4) / seconds).toBeGreaterThan(100);
  }, 60_000);

  it('10,000 publish/unpublish cycles leave the heap flat and the living connections open', async () => {
    const stable = await stableMember();
    const other = await startUpstream((_req, res) => res.end('other'));
    onTestFinished(() => other.close());
    const gw = await startGateway({ 'stable.test': { members: [stable.address] } }, { accessLog: false });
    const living = await livingConnections(gw.port, 'stable.test');
    const cycle = async (i: number): Promise<void> => {
      const name = `churn-${i % 50}.test`;
      gw.publish({ 'stable.test': { members: [stable.address] }, [name]: { members: [other.address, `127.0.0.1:${20_000 + (i % 100)}`] } });
      if (i % 500 === 0) await living.check(); // traffic through the churned routes' pools is exercised by the wire test
      gw.publish({ 'stable.test': { members: [stable.address] } });
    };
    for (let i = 0; i < 1_000; i++) await cycle(i); // warm-up: JIT, maps at their working size
    const before = heapAfterGc();
    for (let i = 0; i < 10_000; i++) await cycle(i);
    const after = heapAfterGc();
    await living.check();
    expect(living.closed).toBe(0);
    expect(gw.dataPlane.registry.all().next().value?.address).toBe(stable.address);
    expect([...gw.dataPlane.registry.all()]).toHaveLength(1);
    expect(after - before, `heap grew from ${before} to ${after}`).toBeLessThan(2 * 1024 * 1024);
  }, 60_000);
});
