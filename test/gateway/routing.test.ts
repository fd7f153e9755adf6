import { describe, expect, it, onTestFinished } from 'vitest';
import { httpGet, httpRequest, rawRequest, statusOf } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';
import { forwardedElement } from '../../src/gateway/steps.js';
import { startGateway } from './harness.js';

async function upstream(name: string) {
  const member = await startUpstream((_req, res) => res.end(name));
  onTestFinished(() => member.close());
  return member;
}

describe('gateway routing by Host', () => {
  it('routes exact names first, then one-label wildcards', async () => {
    const exact = await upstream('exact');
    const wild = await upstream('wild');
    const gw = await startGateway({ 'www.example.test': { members: [exact.address] }, '*.example.test': { members: [wild.address] } });
    expect((await httpGet(gw.port, 'www.example.test')).body).toBe('exact');
    expect((await httpGet(gw.port, 'a.example.test')).body).toBe('wild');
    const deeper = await httpGet(gw.port, 'a.b.example.test');
    expect(deeper.status).toBe(404);
    expect((await httpGet(gw.port, 'example.test')).status).toBe(404);
  });

  it('answers an unknown host with 404 naming the host, and logs it', async () => {
    const gw = await startGateway({});
    const res = await httpGet(gw.port, 'nowhere.test');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('nowhere.test');
    // A refusal is the client's doing (scanners send thousands): a short debug line, no stack; the access log counts the body.
    const refused = gw.logs.find((l) => l.code === 'GW_NO_ROUTE' && l.msg === 'request refused');
    expect(refused).toMatchObject({ level: 20, status: 404, reason: expect.stringContaining('nowhere.test') });
    expect(refused).not.toHaveProperty('err');
    expect(gw.logs.find((l) => l.msg === 'request')).toMatchObject({ status: 404, code: 'GW_NO_ROUTE', bytes: Buffer.byteLength(res.body) });
  });

  it('normalises the Host: case, port, trailing dot, IDN', async () => {
    const member = await upstream('ok');
    const gw = await startGateway({ 'app.test': { members: [member.address] }, 'xn--bcher-kva.test': { members: [member.address] } });
    for (const host of ['APP.Test', 'app.test:8080', 'app.test.', 'App.Test.:80']) {
      expect((await httpGet(gw.port, host)).body, host).toBe('ok');
    }
    // node:http refuses to send non-ASCII header values; the raw socket sends UTF-8 bytes as a client might.
    const raw = await rawRequest(gw.port, Buffer.from('GET / HTTP/1.1\r\nHost: bücher.test\r\nConnection: close\r\n\r\n', 'utf8'));
    expect(statusOf(raw)).toBe(200);
  });

  it('refuses invalid Hosts with 400 and a reason, before anything goes upstream', async () => {
    const member = await upstream('never');
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const cases: Record<string, string> = {
      space: 'GET / HTTP/1.1\r\nHost: app .test\r\nConnection: close\r\n\r\n',
      comma: 'GET / HTTP/1.1\r\nHost: app.test,other.test\r\nConnection: close\r\n\r\n',
      nul: 'GET / HTTP/1.1\r\nHost: app\0.test\r\nConnection: close\r\n\r\n',
      missing: 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n',
      duplicate: 'GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\nConnection: close\r\n\r\n',
      empty: 'GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n',
      userinfo: 'GET http://user@app.test/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n',
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const raw = await rawRequest(gw.port, bytes);
      expect(statusOf(raw), name).toBe(400);
      expect(raw.split('\r\n\r\n')[1]!.length, name).toBeGreaterThan(10);
    }
    expect(member.requests).toHaveLength(0);
  });

  it('routes an absolute-form target by its own authority and forwards it in origin-form', async () => {
    const a = await startUpstream();
    const b = await startUpstream();
    onTestFinished(async () => {
      await Promise.all([a.close(), b.close()]);
    });
    const gw = await startGateway({ 'a.test': { members: [a.address] }, 'b.test': { members: [b.address] } });
    const raw = await rawRequest(gw.port, 'GET http://A.test:8080/x?y=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    expect(b.requests).toHaveLength(0);
    expect(a.requests[0]!.url).toBe('/x?y=1');
    expect(a.requests[0]!.headers.host).toBe('A.test:8080');
    const bare = await rawRequest(gw.port, 'GET http://a.test HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
    expect(statusOf(bare)).toBe(200);
    expect(a.requests[1]!.url).toBe('/');
  });
});

describe('gateway headers', () => {
  it('appends X-Forwarded-For, sets X-Forwarded-Proto and -Host, keeps the Host', async () => {
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    await httpRequest(gw.port, {
      host: 'App.test:8080',
      headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.test' },
    });
    const seen = member.requests[0]!.headers;
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('App.test:8080');
    expect(seen.host).toBe('App.test:8080');
  });

  it('never passes on what only a proxy may say: Forwarded, X-Real-IP, X-Forwarded-Port/-Ssl/-Scheme', async () => {
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    await httpRequest(gw.port, {
      host: 'app.test:8080',
      headers: [
        'Forwarded', 'for=203.0.113.7;proto=https',
        'X-Real-IP', '203.0.113.7',
        'X-Forwarded-Port', '443',
        'X-Forwarded-Ssl', 'on',
        'X-Forwarded-Scheme', 'https',
        'X-Forwarded-Proto', 'https',
        'x-real-ip', '203.0.113.8',
      ],
    });
    const seen = member.requests[0]!;
    expect(seen.headers.forwarded).toBe('for=127.0.0.1;host="app.test:8080";proto=http');
    expect(seen.headers['x-real-ip']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    for (const name of ['x-forwarded-port', 'x-forwarded-ssl', 'x-forwarded-scheme']) expect(seen.headers[name]).toBeUndefined();
    // Exactly one of each, the gateway's own.
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    expect(names.filter((name) => name === 'forwarded' || name === 'x-real-ip')).toEqual(['x-real-ip', 'forwarded']);
  });

  it('writes the Forwarded element of RFC 7239: IPv6 bracketed and quoted, host quoted', () => {
    expect(forwardedElement('2001:db8::7', 'app.test', 'https')).toBe('for="[2001:db8::7]";host="app.test";proto=https');
    expect(forwardedElement('unknown', '[::1]:8443', 'https')).toBe('for=unknown;host="[::1]:8443";proto=https');
    expect(forwardedElement('192.0.2.1', 'a"b\\c', 'http')).toBe('for=192.0.2.1;host="a\\"b\\\\c";proto=http');
  });

  it('appends its own Via entry (RFC 9110 §7.6.3) to the ones the client sent', async () => {
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    await httpRequest(gw.port, { host: 'app.test' });
    await httpRequest(gw.port, { host: 'app.test', headers: { via: '1.0 fred, 1.1 example.com (Apache/1.1)' } });
    expect(member.requests[0]!.headers.via).toBe('1.1 tfgate');
    expect(member.requests[1]!.headers.via).toBe('1.0 fred, 1.1 example.com (Apache/1.1), 1.1 tfgate');
  });

  it('answers 508 to a request that looped through gateways, instead of forwarding it round and round', async () => {
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    // The route's own member being the gateway is what a session can publish; here its port is only known once it listens.
    const loop = await startGateway({ 'loop.test': { members: ['127.0.0.1:1'] } });
    loop.publish({ 'loop.test': { members: [`127.0.0.1:${loop.port}`] } });
    const started = Date.now();
    const looped = await httpRequest(loop.port, { host: 'loop.test' });
    expect(looped.status).toBe(508);
    expect(Date.now() - started).toBeLessThan(3000);
    // Fewer hops than the limit are an ordinary chain.
    const chained = await httpRequest(gw.port, { host: 'app.test', headers: { via: '1.1 tfgate, 1.1 tfgate, 1.1 other' } });
    expect(chained.status).toBe(200);
    expect((await httpRequest(gw.port, { host: 'app.test', headers: { via: '1.1 tfgate, 1.1 TFGATE, 1.1 tfgate (x), 1.0 tfgate' } })).status).toBe(508);
  });

  it('replaces the Host with the route rewrite', async () => {
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address], rewrite: 'internal.svc' } });
    await httpGet(gw.port, 'app.test');
    expect(member.requests[0]!.headers.host).toBe('internal.svc');
    expect(member.requests[0]!.headers['x-forwarded-host']).toBe('app.test');
  });

  it('removes hop-by-hop headers both ways, including those Connection names', async () => {
    const member = await startUpstream((_req, res) => {
      res.setHeader('Connection', 'x-private');
      res.setHeader('X-Private', 'secret');
      res.setHeader('Keep-Alive', 'timeout=99');
      res.setHeader('Proxy-Authenticate', 'Basic');
      res.setHeader('Set-Cookie', ['a=1', 'b=2']);
      res.end('ok');
    });
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const res = await httpRequest(gw.port, {
      host: 'app.test',
      headers: ['Connection', 'x-secret, keep-alive', 'X-Secret', '1', 'Keep-Alive', '300', 'TE', 'trailers', 'Proxy-Authorization', 'Basic eA==', 'Upgrade', 'h2c', 'X-Kept', 'yes', 'X-Kept', 'again'],
    });
    expect(res.status).toBe(200);
    const seen = member.requests[0]!.headers;
    for (const name of ['x-secret', 'keep-alive', 'te', 'proxy-authorization', 'upgrade']) expect(seen[name], name).toBeUndefined();
    expect(member.requests[0]!.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-kept')).toHaveLength(2);
    expect(res.headers['x-private']).toBeUndefined();
    expect(res.headers['keep-alive'] ?? '').not.toContain('99'); // Node may add its own
    expect(res.headers['proxy-authenticate']).toBeUndefined();
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
  });

  it('writes one access-log line per request', async () => {
    const member = await startUpstream((_req, res) => res.end('12345'));
    onTestFinished(() => member.close());
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    await httpGet(gw.port, 'app.test', '/path?q');
    const line = gw.logs.find((l) => l.msg === 'request');
    expect(line).toMatchObject({ fqdn: 'app.test', method: 'GET', path: '/path?q', status: 200, member: member.address, bytes: 5, client: '127.0.0.1' });
    expect(typeof line!.durationMs).toBe('number');
  });
});
