import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import { rawConnect, readUntil, statusOf } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

describe('connection caps with several workers', () => {
  it('holds --max-connections for the whole gateway, not per worker', async () => {
    const member = await startUpstream((_req, res) => res.end('ok'));
    onTestFinished(() => member.close());
    const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
    writeFileSync(file, JSON.stringify({ 'caps.test': { members: [member.address] } }));
    const gw = await startGatewayProcess(['--workers', '2', '--routes', file, '--max-connections', '10', '--max-connections-per-client', '1000']);
    const sockets: Socket[] = [];
    onTestFinished(() => {
      for (const socket of sockets) socket.destroy();
    });
    const statuses: number[] = [];
    // Each connection stays open after its answer, so every admitted one keeps counting.
    for (let i = 0; i < 30; i++) {
      const socket = await rawConnect(gw.listening.http);
      sockets.push(socket);
      socket.write('GET / HTTP/1.1\r\nHost: caps.test\r\n\r\n');
      statuses.push(statusOf(await readUntil(socket, (text) => text.includes('\r\n\r\n'), 5_000).catch(() => 'closed')));
    }
    const served = statuses.filter((status) => status === 200).length;
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThanOrEqual(10);
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([]);
  });
});
