import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import { httpGet } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

function routesFile(routes: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
  writeFileSync(file, JSON.stringify(routes));
  return file;
}

/** True when nothing accepts connections on the port any more. */
async function refused(port: number): Promise<boolean> {
  const socket = connect(port, '127.0.0.1');
  const outcome = await new Promise<boolean>((resolve) => {
    socket.once('connect', () => resolve(false));
    socket.once('error', () => resolve(true));
  });
  socket.destroy();
  return outcome;
}

describe('tfgate serve lifecycle', () => {
  it('on SIGTERM stops accepting, lets an in-flight slow request finish, then exits 0', async () => {
    let release: () => void = () => {};
    let markStarted: () => void = () => {};
    const started = new Promise<void>((resolve) => (markStarted = resolve));
    const member = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('slow ');
      release = () => res.end('and done');
      markStarted();
    });
    onTestFinished(() => member.close());
    const gw = await startGatewayProcess(['--routes', routesFile({ 'slow.test': { members: [member.address] } }), '--drain-timeout', '20s']);
    const port = gw.listening.http;

    const inFlight = httpGet(port, 'slow.test', '/slow');
    await started;
    const exited = once(gw.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    gw.child.kill('SIGTERM');
    await gw.waitForLine((line) => line.msg === 'stopping');
    // The listener is closed while the request is still running: new clients are refused.
    const deadline = Date.now() + 5_000;
    while (!(await refused(port)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await refused(port)).toBe(true);
    expect(gw.child.exitCode).toBeNull();

    release();
    const response = await inFlight;
    expect(response).toMatchObject({ status: 200, body: 'slow and done' });
    const [code] = await exited;
    expect(code).toBe(0);
    const request = gw.lines.find((line) => line.msg === 'request' && line.fqdn === 'slow.test');
    expect(request).toMatchObject({ status: 200, path: '/slow', member: member.address });
    expect(gw.lines.some((line) => line.msg === 'stopped')).toBe(true);
  });

  it('bounds the drain by --drain-timeout: a request that never ends is cut and the process exits 0', async () => {
    const member = await startUpstream(() => {
      // never answers
    });
    onTestFinished(() => member.close());
    const gw = await startGatewayProcess(['--routes', routesFile({ 'stuck.test': { members: [member.address] } }), '--drain-timeout', '300ms']);
    const stuck = httpGet(gw.listening.http, 'stuck.test').then(
      () => 'answered',
      () => 'cut',
    );
    const deadline = Date.now() + 5_000;
    while (member.requests.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(member.requests).toHaveLength(1);
    const began = Date.now();
    expect(await gw.stop()).toBe(0);
    expect(Date.now() - began).toBeLessThan(5_000);
    expect(await stuck).toBe('cut');
  });

  it('exits 0 on SIGINT too, closing idle keep-alive connections at once', async () => {
    const gw = await startGatewayProcess();
    const idle = connect(gw.listening.http, '127.0.0.1');
    idle.on('error', () => {});
    await once(idle, 'connect');
    const closed = once(idle, 'close');
    const exited = once(gw.child, 'exit') as Promise<[number | null]>;
    const began = Date.now();
    gw.child.kill('SIGINT');
    const [code] = await exited;
    await closed;
    expect(code).toBe(0);
    expect(Date.now() - began).toBeLessThan(5_000);
  });
});
