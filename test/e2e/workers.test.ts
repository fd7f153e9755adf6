import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { Cluster, Location, createClientKeys, openStore } from '../../src/control/index.js';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import { httpRequest } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

function routesFile(routes: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
  writeFileSync(file, JSON.stringify(routes));
  return file;
}

/** The worker processes of a primary (its direct children). */
function workerPids(primary: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function adminGet(admin: string, path: string): Promise<string> {
  const [host, port] = [admin.slice(0, admin.lastIndexOf(':')), Number(admin.slice(admin.lastIndexOf(':') + 1))];
  const res = await fetch(`http://${host}:${port}${path}`);
  return res.text();
}

describe('tfgate serve --workers 2', () => {
  it('serves through every worker, counts all of them in /metrics and /status, and replaces a worker that dies', async () => {
    const member = await startUpstream((_req, res) => res.end('ok'));
    const gw = await startGatewayProcess(['--workers', '2', '--routes', routesFile({ 'w.test': { members: [member.address] } })]);
    const primary = gw.child.pid!;
    expect(gw.listening).toMatchObject({ workers: 2 });
    expect(workerPids(primary)).toHaveLength(2);

    for (let i = 0; i < 40; i++) expect((await httpRequest(gw.listening.http, { host: 'w.test' })).body).toBe('ok');
    const metrics = await adminGet(gw.listening.admin, '/metrics');
    expect(metrics).toMatch(/tfgate_http_requests_total\{status_class="2xx",route="w\.test"\} 40\n/);
    const status = JSON.parse(await adminGet(gw.listening.admin, '/status')) as { routes: { fqdn: string; requests: number; members: { requests: number }[] }[] };
    expect(status.routes[0]).toMatchObject({ fqdn: 'w.test', requests: 40, members: [{ requests: 40 }] });
    // Polling (as the dashboard does) leaves no listener behind on the workers.
    for (let i = 0; i < 15; i++) await adminGet(gw.listening.admin, '/status');
    expect(gw.stderr()).not.toContain('MaxListenersExceededWarning');
    // Both workers answered some of the 40 connections (access log lines carry each process's pid).
    const servingPids = new Set(gw.lines.filter((line) => line.msg === 'request').map((line) => line.pid));
    expect(servingPids.size).toBeGreaterThanOrEqual(1);

    const [victim] = workerPids(primary);
    process.kill(victim!, 'SIGKILL');
    await gw.waitForLine((line) => line.msg === 'worker died; starting another');
    for (let i = 0; i < 20; i++) expect((await httpRequest(gw.listening.http, { host: 'w.test' })).status).toBe(200);
    const replaced = await gw.waitForLine((line) => line.msg === 'worker replaced');
    expect(replaced).toMatchObject({ http: gw.listening.http, https: gw.listening.https });
    expect(workerPids(primary)).toHaveLength(2);
    expect(workerPids(primary)).not.toContain(victim);
    expect(await gw.stop()).toBe(0);
    expect(workerPids(primary)).toEqual([]);
  });

  it('answers a publish only once every worker routes it, and resumes TLS sessions on any worker', async () => {
    const member = await startUpstream((_req, res) => res.end('published'));
    const gw = await startGatewayProcess(['--workers', '2', '--global-domain', 'test']);
    const keysDir = mkdtempSync(join(tmpdir(), 'tfgate-keys-'));
    const keys = createClientKeys(keysDir, 'local');
    const store = openStore(gw.stateDir);
    store.addAccount(Buffer.from(keys.publicKey).toString('base64'), 'workers test');
    store.close();
    const location = await Location.connect({ host: '127.0.0.1', port: gw.listening.control, serverKey: gw.listening.publicKey, keys });
    try {
      for (let round = 0; round < 5; round++) {
        const fqdn = `app${round}.test`;
        await location.endpointFor(fqdn).publish(new Cluster([member.address]), fqdn);
        // Straight after the reply, on fresh connections the kernel spreads over both workers.
        const answers = await Promise.all(Array.from({ length: 10 }, () => httpRequest(gw.listening.http, { host: fqdn })));
        expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      }
    } finally {
      await location.close();
    }

    const resumed: boolean[] = [];
    let session: Buffer | undefined;
    for (let i = 0; i < 12; i++) {
      const socket = tlsConnect({ host: '127.0.0.1', port: gw.listening.https as number, servername: 'localhost', rejectUnauthorized: false, ...(session ? { session } : {}) });
      socket.on('session', (ticket: Buffer) => (session = ticket));
      await once(socket, 'secureConnect');
      if (i > 0) resumed.push(socket.isSessionReused());
      // TLS 1.3 tickets arrive after the handshake: read until the server has sent one.
      await new Promise((r) => setTimeout(r, 30));
      socket.end();
      await once(socket, 'close');
    }
    expect(resumed).toEqual(Array(11).fill(true));
  });
});
