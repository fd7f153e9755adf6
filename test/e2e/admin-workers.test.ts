import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import { httpRequest } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

describe('/status of a gateway process', () => {
  it.each(['1', '2'])('counts routes named after Object.prototype members like any other (--workers %s)', { timeout: 30_000 }, async (workers) => {
    const member = await startUpstream((_req, res) => res.end('ok'));
    onTestFinished(() => member.close());
    const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
    // Written out by hand: in an object literal, `__proto__` would set the prototype, not a key.
    const cluster = JSON.stringify({ members: [member.address] });
    writeFileSync(file, `{"constructor": ${cluster}, "__proto__": ${cluster}, "ok.test": ${cluster}}`);
    const gw = await startGatewayProcess(['--workers', workers, '--routes', file, '--access-log=false']);
    const hosts = ['constructor', '__proto__', 'ok.test'];
    for (let i = 0; i < 4; i++) for (const host of hosts) expect((await httpRequest(gw.listening.http, { host })).status).toBe(200);
    const adminPort = Number(gw.listening.admin.split(':').pop());
    const status = JSON.parse((await httpRequest(adminPort, { host: 'localhost', path: '/status' })).body) as {
      requests: number;
      errors: number;
      routes: { fqdn: string; requests: number; errors: number; members: { requests: number }[] }[];
    };
    expect(status.routes.map((route) => [route.fqdn, route.requests, route.errors, route.members[0]?.requests])).toEqual([
      ['__proto__', 4, 0, 12],
      ['constructor', 4, 0, 12],
      ['ok.test', 4, 0, 12],
    ]);
    expect(status.requests).toBe(12);
    expect(status.errors).toBe(0);
  });
});
