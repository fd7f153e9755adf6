import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Cluster } from '../../src/control/index.js';
import { adminHostAllowed, parseStatusQuery } from '../../src/gateway/admin.js';
import { CertificateCatalog, buildStatus } from '../../src/gateway/index.js';
import type { PlaneReport } from '../../src/gateway/index.js';
import type { RouteSpec, RoutingState } from '../../src/vhost/index.js';
import { makeCertificate } from '../helpers/certs.js';
import { httpGet, httpRequest, rawRequest, statusOf } from '../helpers/http.js';
import { startTestServer } from '../helpers/server.js';
import { deadAddress, startUpstream } from '../helpers/upstream.js';

/** The value of one sample line of a Prometheus exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const seen = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => seen[k] === v) && Object.keys(seen).length === Object.keys(labels).length) return Number(match[3]);
  }
  return undefined;
}

describe('admin listener', () => {
  it('refuses requests forwarded by a gateway: a session cannot publish the admin listener as a member', async () => {
    const t = await startTestServer();
    const location = await t.connect('mallory');
    await location.endpointFor('adm.test').publish(new Cluster([`127.0.0.1:${t.adminPort}`]), 'adm.test');
    const through = await httpRequest(t.server.http, { host: 'adm.test', path: '/status' });
    expect(through.status).toBe(403);
    expect(through.body).not.toContain('mallory');
    expect((await httpRequest(t.adminPort, { host: 'localhost', path: '/status' })).status).toBe(200);
  });

  it('serves /healthz, /readyz, and a /status with sessions, routes, members and their health', async () => {
    const t = await startTestServer();
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const location = await t.connect('alice');
    const cluster = new Cluster([member.address]);
    await location.endpointFor('app.test').publish(cluster, 'app.test');

    expect((await httpRequest(t.adminPort, { host: 'localhost', path: '/healthz' })).body).toBe('ok\n');
    expect((await httpRequest(t.adminPort, { host: 'localhost', path: '/readyz' })).body).toBe('ready\n');
    expect((await httpGet(t.server.http, 'app.test')).status).toBe(200);

    const res = await httpRequest(t.adminPort, { host: 'localhost', path: '/status' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const status = JSON.parse(res.body);
    expect(status.sessions).toHaveLength(1);
    expect(status.sessions[0]).toMatchObject({ account: 'alice', connected: true, fqdns: ['app.test'], rid: location.rid });
    expect(status.sessions[0].ageSeconds).toBeGreaterThanOrEqual(0);
    expect(Date.parse(status.sessions[0].since)).toBeLessThanOrEqual(Date.now());
    expect(status.routes).toEqual([
      {
        fqdn: 'app.test',
        cluster: Buffer.from(cluster._id!).toString('hex'),
        rewrite: null,
        requests: 1,
        errors: 0,
        members: [{ address: member.address, state: 'healthy', healthy: true, ejectedUntil: null, consecutiveFailures: 0, inFlight: 0, requests: 1 }],
      },
    ]);
    expect(status.requests).toBe(1);
    expect(status.inFlight).toBe(0);
  });

  it('shows a member that cannot be connected to as ejected, in /status and /metrics', async () => {
    const t = await startTestServer();
    const location = await t.connect('bob');
    const dead = await deadAddress();
    await location.endpointFor('down.test').publish(new Cluster([dead]), 'down.test');
    expect((await httpGet(t.server.http, 'down.test')).status).toBeGreaterThanOrEqual(502);

    const status = JSON.parse((await httpRequest(t.adminPort, { host: 'localhost', path: '/status' })).body);
    const [route] = status.routes;
    expect(route.errors).toBe(1);
    expect(route.members[0]).toMatchObject({ address: dead, state: 'ejected', healthy: false, consecutiveFailures: 1 });
    expect(Date.parse(route.members[0].ejectedUntil)).toBeGreaterThan(Date.now() - 1000);

    const metrics = (await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' })).body;
    expect(sample(metrics, 'tfgate_members_ejected')).toBe(1);
    expect(sample(metrics, 'tfgate_http_requests_total', { status_class: '5xx', route: 'down.test' })).toBe(1);
  });

  it('exposes Prometheus metrics that change with traffic', async () => {
    const t = await startTestServer();
    const member = await startUpstream();
    onTestFinished(() => member.close());
    const before = await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' });
    expect(before.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(before.body).toContain('# TYPE tfgate_http_requests_total counter');
    expect(sample(before.body, 'tfgate_sessions')).toBe(0);
    expect(sample(before.body, 'tfgate_routes')).toBe(0);
    expect(sample(before.body, 'tfgate_http_requests_total', { status_class: '2xx', route: 'm.test' })).toBeUndefined();

    const location = await t.connect('carol');
    await location.endpointFor('m.test').publish(new Cluster([member.address]), 'm.test');
    for (let i = 0; i < 3; i++) expect((await httpGet(t.server.http, 'm.test')).status).toBe(200);
    expect((await httpGet(t.server.http, 'nowhere.test')).status).toBe(404);

    const after = (await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' })).body;
    expect(sample(after, 'tfgate_http_requests_total', { status_class: '2xx', route: 'm.test' })).toBe(3);
    expect(sample(after, 'tfgate_http_requests_total', { status_class: '4xx', route: 'none' })).toBe(1);
    expect(sample(after, 'tfgate_upstream_response_seconds_count', { route: 'm.test' })).toBe(3);
    expect(sample(after, 'tfgate_upstream_response_seconds_bucket', { route: 'm.test', le: '+Inf' })).toBe(3);
    expect(sample(after, 'tfgate_sessions')).toBe(1);
    expect(sample(after, 'tfgate_routes')).toBe(1);
    expect(sample(after, 'tfgate_members_ejected')).toBe(0);
    expect(sample(after, 'tfgate_control_messages_total', { command: 'publish_web', result: 'ok' })).toBe(1);
    // Every request above came on its own connection, closed once answered.
    expect(sample(after, 'tfgate_active_connections', { listener: 'http' })).toBeGreaterThanOrEqual(0);
    expect(after).toContain('# TYPE tfgate_tls_handshakes_total counter');
    expect(after).toContain('# TYPE tfgate_certificate_expiry_timestamp_seconds gauge');

    await expect(location.request('make_domain_global', { domain: 'x.test' })).rejects.toThrow();
    const refused = (await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' })).body;
    expect(sample(refused, 'tfgate_control_messages_total', { command: 'make_domain_global', result: 'refused' })).toBe(1);
  });

  it('counts TLS handshakes on the HTTPS listener and lists the default certificate', async () => {
    const t = await startTestServer();
    const good = tlsConnect({ host: '127.0.0.1', port: t.server.https, servername: 'app.test', rejectUnauthorized: false });
    good.on('error', () => {});
    good.resume();
    await once(good, 'secureConnect');
    good.end('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n');
    await once(good, 'close');
    const bad = netConnect(t.server.https, '127.0.0.1');
    bad.on('error', () => {});
    bad.resume();
    await once(bad, 'connect');
    bad.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])); // a handshake record that is not a ClientHello
    await once(bad, 'close');

    const metrics = (await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' })).body;
    expect(sample(metrics, 'tfgate_tls_handshakes_total', { result: 'ok' })).toBe(1);
    expect(sample(metrics, 'tfgate_tls_handshakes_total', { result: 'failed' })).toBe(1);
    expect(sample(metrics, 'tfgate_active_connections', { listener: 'https' })).toBe(0);
    expect(metrics).toMatch(/tfgate_certificate_expiry_timestamp_seconds\{name="localhost",source="default"\} \d+/);

    const status = JSON.parse((await httpRequest(t.adminPort, { host: 'localhost', path: '/status' })).body);
    expect(status.certificates).toHaveLength(1);
    expect(status.certificates[0]).toMatchObject({ names: ['localhost'], source: 'default' });
    expect(Date.parse(status.certificates[0].notAfter)).toBeGreaterThan(Date.now());
    expect(status.certificates[0].expiresInDays).toBeGreaterThan(30);
  });

  it('writes one access-log line per request with its fields', async () => {
    const t = await startTestServer();
    const member = await startUpstream((_req, res) => res.end('twelve bytes'));
    onTestFinished(() => member.close());
    const location = await t.connect('dave');
    await location.endpointFor('log.test').publish(new Cluster([member.address]), 'log.test');
    expect((await httpGet(t.server.http, 'log.test', '/some/path?q=1')).body).toBe('twelve bytes');

    const line = t.logs.find((l) => l.msg === 'request' && l.fqdn === 'log.test');
    expect(line).toMatchObject({
      level: 30,
      fqdn: 'log.test',
      method: 'GET',
      path: '/some/path?q=1',
      status: 200,
      member: member.address,
      bytes: 12,
      client: '127.0.0.1',
    });
    expect(typeof line!.time).toBe('number');
    expect(Math.abs((line!.time as number) - Date.now())).toBeLessThan(10_000);
    expect(line!.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('logs no request lines with --access-log=false, and still counts them', async () => {
    const t = await startTestServer(['--access-log=false']);
    expect((await httpGet(t.server.http, 'none.test')).status).toBe(404);
    expect(t.logs.filter((l) => l.msg === 'request')).toEqual([]);
    const metrics = (await httpRequest(t.adminPort, { host: 'localhost', path: '/metrics' })).body;
    expect(sample(metrics, 'tfgate_http_requests_total', { status_class: '4xx', route: 'none' })).toBe(1);
  });

  it('answers only a Host that names it, so a DNS-rebinding page cannot read it: 421 for any other name', async () => {
    const t = await startTestServer();
    const location = await t.connect('erin');
    await location.endpointFor('secret.test').publish(new Cluster(['127.0.0.1:1']), 'secret.test');
    for (const path of ['/', '/status', '/metrics', '/healthz', '/readyz', '/nope']) {
      for (const host of ['evil.example', `evil.example:${t.adminPort}`, 'localhost.evil.example', '127.0.0.1.evil.example', 'attacker.test:80']) {
        const res = await httpRequest(t.adminPort, { host, path });
        expect(res.status, `${host} ${path}`).toBe(421);
        expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.body).toMatch(/^the admin listener answers only to Host localhost, a loopback address, its own address or a name given with --admin-host, not ".*"\n$/);
        expect(res.body).not.toContain('erin');
        expect(res.body).not.toContain('secret.test');
      }
    }
    // Its own names: localhost, loopback literals, with or without a port, any case.
    for (const host of ['localhost', `localhost:${t.adminPort}`, 'LocalHost.', '127.0.0.1', `127.0.0.1:${t.adminPort}`, '127.9.8.7:1234', '[::1]', `[::1]:${t.adminPort}`]) {
      expect((await httpRequest(t.adminPort, { host, path: '/healthz' })).status, host).toBe(200);
      const status = await httpRequest(t.adminPort, { host, path: '/status' });
      expect(status.status, host).toBe(200);
      expect(JSON.parse(status.body).sessions[0].account).toBe('erin');
    }
    // HTTP/1.0 without a Host: no browser sends that, probes may.
    expect(statusOf(await rawRequest(t.adminPort, 'GET /healthz HTTP/1.0\r\n\r\n'))).toBe(200);
  });

  it('also answers the names given with --admin-host, as a scraper that names it by DNS sends them', async () => {
    const t = await startTestServer(['--admin-host', 'Metrics.Internal', '--admin-host', 'gw1.example.']);
    for (const host of ['metrics.internal', `metrics.internal:${t.adminPort}`, 'GW1.example']) {
      expect((await httpRequest(t.adminPort, { host, path: '/metrics' })).status, host).toBe(200);
    }
    expect((await httpRequest(t.adminPort, { host: 'other.internal', path: '/metrics' })).status).toBe(421);
  });

  it('sends X-Content-Type-Options: nosniff with every answer', async () => {
    const t = await startTestServer();
    for (const [path, status] of [['/', 200], ['/status', 200], ['/metrics', 200], ['/healthz', 200], ['/readyz', 200], ['/nope', 404], ['/status?limit=x', 400]] as const) {
      const res = await httpRequest(t.adminPort, { host: 'localhost', path });
      expect(res.status, path).toBe(status);
      expect(res.headers['x-content-type-options'], path).toBe('nosniff');
    }
  });

  it('lists a bounded page of routes in /status, with totals, and finds others by name', async () => {
    const routes: Record<string, { members: string[] }> = {};
    for (let i = 0; i < 100_000; i++) routes[`h${i}.example`] = { members: ['127.0.0.1:1'] };
    const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
    writeFileSync(file, JSON.stringify(routes));
    const t = await startTestServer(['--routes', file]);
    const get = async (path: string): Promise<{ status: number; body: string; json: () => any }> => {
      const res = await httpRequest(t.adminPort, { host: 'localhost', path, timeoutMs: 10_000 });
      return { status: res.status, body: res.body, json: () => JSON.parse(res.body) };
    };
    const plain = await get('/status');
    expect(plain.status).toBe(200);
    expect(plain.body.length).toBeLessThan(200_000);
    const page = plain.json();
    expect(page.routes).toHaveLength(200);
    expect(page).toMatchObject({ routesTotal: 100_000, routesMatched: 100_000, routesTruncated: true, routesQuery: { limit: 200, q: null, fqdn: null }, membersTotal: 1 });
    const sorted = Object.keys(routes).sort();
    expect(page.routes.map((r: { fqdn: string }) => r.fqdn)).toEqual(sorted.slice(0, 200));

    const found = (await get('/status?q=H9999')).json();
    expect(found.routes.map((r: { fqdn: string }) => r.fqdn)).toEqual(['h9999.example', 'h99990.example', 'h99991.example', 'h99992.example', 'h99993.example', 'h99994.example', 'h99995.example', 'h99996.example', 'h99997.example', 'h99998.example', 'h99999.example']);
    expect(found).toMatchObject({ routesTotal: 100_000, routesMatched: 11, routesTruncated: false, routesQuery: { q: 'H9999' } });
    const few = (await get('/status?q=h9999&limit=3')).json();
    expect(few).toMatchObject({ routesMatched: 11, routesTruncated: true });
    expect(few.routes).toHaveLength(3);
    const one = (await get('/status?fqdn=H12345.Example.')).json();
    expect(one.routes).toHaveLength(1);
    expect(one.routes[0]).toMatchObject({ fqdn: 'h12345.example', members: [{ address: '127.0.0.1:1' }] });
    expect(one).toMatchObject({ routesMatched: 1, routesTruncated: false, routesQuery: { fqdn: 'h12345.example' } });
    expect((await get('/status?fqdn=nowhere.example')).json()).toMatchObject({ routes: [], routesMatched: 0, routesTotal: 100_000 });
    const counts = (await get('/status?limit=0')).json();
    expect(counts).toMatchObject({ routes: [], routesTotal: 100_000, routesMatched: 100_000, routesTruncated: true });

    for (const [path, reason] of [
      ['/status?limit=-1', 'limit must be a whole number from 0 to 5000'],
      ['/status?limit=5001', 'limit must be a whole number from 0 to 5000'],
      ['/status?limit=ten', 'limit must be a whole number from 0 to 5000'],
      ['/status?fqdn=bad%20name', 'is not a name'],
      [`/status?q=${'a'.repeat(254)}`, 'q must be at most 253 characters'],
    ]) {
      const res = await get(path!);
      expect(res.status, path).toBe(400);
      expect(res.body, path).toContain(reason);
    }
  });

  it('serves the dashboard page, self-contained, at /', async () => {
    const t = await startTestServer();
    const res = await httpRequest(t.adminPort, { host: 'localhost', path: '/' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    // No other page may frame it (clickjacking the operator's view).
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.body).toContain('<title>tfgate</title>');
    expect(res.body).toContain('fetch("status?limit=" + PAGE');
    // No external assets: no src/href attribute, no URL to another origin.
    expect(res.body).not.toMatch(/\b(src|href)=/);
    expect(res.body).not.toMatch(/https?:\/\//);
    expect((await httpRequest(t.adminPort, { host: 'localhost', path: '/nope' })).status).toBe(404);
    expect((await httpRequest(t.adminPort, { host: 'localhost', path: '/status', method: 'POST' })).status).toBe(405);
  });
});

describe('adminHostAllowed', () => {
  const none = { configured: null, bound: null, local: null };
  it('allows localhost and loopback literals, with or without a port, and a request without Host', () => {
    for (const host of [undefined, 'localhost', 'localhost:9090', 'LOCALHOST.', '127.0.0.1', '127.0.0.1:9090', '127.255.0.9', '[::1]', '[::1]:9090', '[0:0::1]:80']) {
      expect(adminHostAllowed(host, none), String(host)).toBe(true);
    }
  });

  it('refuses other names, loopback spellings no browser sends, and names that only look local', () => {
    for (const host of ['evil.example', 'evil.example:9090', 'localhost.evil.example', 'a.localhost', '127.0.0.1.nip.io', '127.1', '2130706433', '0x7f.0.0.1', '10.0.0.5', '[fd00::2]', '', 'bad host', '[::1']) {
      expect(adminHostAllowed(host, none), host).toBe(false);
    }
  });

  it('allows the address the listener is bound to, and the one a connection to a wildcard bind reached', () => {
    expect(adminHostAllowed('192.0.2.2:9090', { configured: '192.0.2.2', bound: '192.0.2.2', local: '192.0.2.2' })).toBe(true);
    expect(adminHostAllowed('192.0.2.2', { configured: null, bound: null, local: '192.0.2.2' })).toBe(true);
    expect(adminHostAllowed('[FD00:0::2]:9090', { configured: null, bound: '[fd00::2]', local: null })).toBe(true);
    expect(adminHostAllowed('admin.internal:9090', { configured: 'admin.internal', bound: '192.0.2.2', local: '192.0.2.2' })).toBe(true);
    expect(adminHostAllowed('192.0.2.3', { configured: '192.0.2.2', bound: '192.0.2.2', local: '192.0.2.2' })).toBe(false);
    expect(adminHostAllowed('evil.example', { configured: '192.0.2.2', bound: '192.0.2.2', local: '192.0.2.2' })).toBe(false);
  });
});

describe('parseStatusQuery', () => {
  it('reads limit, q and fqdn (normalised), with defaults', () => {
    expect(parseStatusQuery(new URLSearchParams(''))).toEqual({ limit: 200, q: null, fqdn: null });
    expect(parseStatusQuery(new URLSearchParams('limit=0&q=Shop&fqdn=*.Apps.Example.&_=123'))).toEqual({ limit: 0, q: 'Shop', fqdn: '*.apps.example' });
    expect(parseStatusQuery(new URLSearchParams('limit=5000&q=&fqdn='))).toEqual({ limit: 5000, q: null, fqdn: null });
    expect(parseStatusQuery(new URLSearchParams('limit=1e3'))).toMatch(/^limit must be/);
    expect(parseStatusQuery(new URLSearchParams('fqdn=a..b'))).toMatch(/^fqdn "a..b" is not a name: /);
  });
});

const NO_REPORT: PlaneReport = { version: 0, inFlight: 0, members: {}, routeTotals: {} };

describe('buildStatus', () => {
  it('lists certificates with their source and expiry', () => {
    const notAfter = new Date(Date.now() + 10 * 86_400_000);
    const cert = makeCertificate({ names: ['www.example.com', 'example.com'], notAfter });
    const state: RoutingState = {
      version: 1,
      routes: {},
      certificates: { default: { source: 'default', certPem: cert.certPem, keyPem: cert.keyPem, origin: 'default', servedFor: [] } },
    };
    const now = Date.now();
    const catalog = new CertificateCatalog();
    const status = buildStatus({ state, certificates: catalog.list(state.certificates), report: NO_REPORT, sessions: () => [], startedAt: now - 5_000, now: () => now }).document();
    expect(catalog.list(state.certificates)).toBe(catalog.list(state.certificates)); // listed once per certificate set
    expect(status.uptimeSeconds).toBe(5);
    expect(status.certificates).toEqual([
      { names: ['www.example.com', 'example.com'], source: 'default', origin: 'default', notAfter: new Date(Math.floor(notAfter.getTime() / 1000) * 1000).toISOString(), expiresInDays: 9 },
    ]);
  });

  it('has no certificates before the state carries any', () => {
    const state: RoutingState = { version: 0, routes: {} };
    const status = buildStatus({ state, certificates: new CertificateCatalog().list(state.certificates), report: NO_REPORT, sessions: () => [], startedAt: 0, now: Date.now }).document();
    expect(status.certificates).toEqual([]);
    expect(status.routes).toEqual([]);
  });

  it('lists each route of the state with its members and their counters', () => {
    const spec = (fqdn: string, members: string[]) => ({ fqdn, cluster: `c-${fqdn}`, members, rewrite: null, source: 'session' as const });
    const state: RoutingState = { version: 7, routes: { 'b.example.com': spec('b.example.com', ['10.0.0.2:80']), 'a.example.com': spec('a.example.com', ['10.0.0.1:80', '10.0.0.2:80']) } };
    const now = Date.now();
    const report: PlaneReport = {
      version: 7,
      inFlight: 1,
      members: { '10.0.0.2:80': { inFlight: 1, requests: 5, ejectedUntil: now + 10_000, consecutiveFailures: 2, healthy: true } },
      routeTotals: { 'a.example.com': { requests: 3, errors: 1 } },
    };
    const status = buildStatus({ state, certificates: [], report, sessions: () => [], startedAt: 0, now: () => now }).document();
    expect(status.version).toBe(7);
    expect(status.routes.map((route) => route.fqdn)).toEqual(['a.example.com', 'b.example.com']);
    expect(status.routes[0]).toMatchObject({ cluster: 'c-a.example.com', rewrite: null, requests: 3, errors: 1 });
    expect(status.routes[0]!.members.map((member) => [member.address, member.state])).toEqual([['10.0.0.1:80', 'healthy'], ['10.0.0.2:80', 'ejected']]);
    expect(status.routes[1]!.members[0]).toMatchObject({ requests: 5, inFlight: 1, consecutiveFailures: 2 });
  });
  it('lists the first routes by fqdn, a page at a time, and says how many there are', () => {
    const spec = (fqdn: string): RouteSpec => ({ fqdn, cluster: `c-${fqdn}`, members: [], rewrite: null, source: 'static' });
    const names = Array.from({ length: 1_000 }, (_, i) => `n${(i * 7919) % 1_000}.example`);
    const state: RoutingState = { version: 1, routes: Object.fromEntries(names.map((name) => [name, spec(name)])) };
    const snapshot = buildStatus({ state, certificates: [], report: NO_REPORT, sessions: () => [], startedAt: 0, now: Date.now });
    const sorted = [...names].sort();
    const first = snapshot.document();
    expect(first.routes.map((r) => r.fqdn)).toEqual(sorted.slice(0, 200));
    expect(first).toMatchObject({ routesTotal: 1_000, routesMatched: 1_000, routesTruncated: true, routesQuery: { limit: 200, q: null, fqdn: null } });
    expect(snapshot.document({ limit: 1_000, q: null, fqdn: null }).routes.map((r) => r.fqdn)).toEqual(sorted);
    const found = snapshot.document({ limit: 5, q: '99', fqdn: null });
    expect(found.routes.map((r) => r.fqdn)).toEqual(sorted.filter((name) => name.includes('99')).slice(0, 5));
    expect(found).toMatchObject({ routesMatched: 19, routesTruncated: true });
  });

  it('lists at most 20 names per session, with their count', () => {
    const state: RoutingState = { version: 0, routes: {} };
    const fqdns = Array.from({ length: 50 }, (_, i) => `s${i}.test`);
    const status = buildStatus({ state, certificates: [], report: NO_REPORT, sessions: () => [{ rid: 'r1', account: 'a', connected: true, since: 0, fqdns }], startedAt: 0, now: Date.now }).document();
    expect(status.sessions[0]).toMatchObject({ fqdns: fqdns.slice(0, 20), fqdnCount: 50 });
    expect(status.sessionsTotal).toBe(1);
  });
  it("reads a route's counters by its own name only: routes named constructor or __proto__ count like others", () => {
    const spec = (fqdn: string): RouteSpec => ({ fqdn, cluster: `c-${fqdn}`, members: ['10.0.0.1:80'], rewrite: null, source: 'static' });
    const routes = JSON.parse(JSON.stringify({ constructor: spec('constructor'), 'ok.test': spec('ok.test') })) as Record<string, RouteSpec>;
    Object.defineProperty(routes, '__proto__', { value: spec('__proto__'), enumerable: true });
    const state: RoutingState = { version: 3, routes };
    // As a merged report carries them: own keys, `__proto__` included.
    const report = JSON.parse(
      '{"version":3,"inFlight":0,"members":{"10.0.0.1:80":{"inFlight":0,"requests":9,"ejectedUntil":0,"consecutiveFailures":0,"healthy":true}},' +
        '"routeTotals":{"__proto__":{"requests":4,"errors":1},"ok.test":{"requests":5,"errors":0}}}',
    ) as PlaneReport;
    const status = JSON.parse(JSON.stringify(buildStatus({ state, certificates: [], report, sessions: () => [], startedAt: 0, now: Date.now }).document()));
    expect(status.routes.map((r: { fqdn: string; requests: number; errors: number }) => [r.fqdn, r.requests, r.errors])).toEqual([
      ['__proto__', 4, 1],
      ['constructor', 0, 0],
      ['ok.test', 5, 0],
    ]);
    expect(status).toMatchObject({ requests: 9, errors: 1, membersTotal: 1, membersUnhealthy: 0 });
  });
});
