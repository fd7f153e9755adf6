import { once } from 'node:events';
import { Agent, request } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { RoutingStateBuilder } from '../../src/control/routing-state.js';
import { DataPlane, Gateway } from '../../src/gateway/index.js';
import { createSelfSignedCertificate } from '../../src/sni/index.js';
import type { CertificateSpec } from '../../src/vhost/index.js';
import { collectingLogger } from '../helpers/logs.js';
import { makeCertificate } from '../helpers/certs.js';
import { httpRequest, rawRequest } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';
import { TEST_LIMITS } from './harness.js';

function spec(names: string[], source: CertificateSpec['source'], origin = names[0]!): CertificateSpec {
  const cert = makeCertificate({ names });
  return { source, origin, certPem: cert.certPem, keyPem: cert.keyPem, servedFor: names };
}

/** A gateway with HTTP and HTTPS listeners, operator certificates for `www.example.com` and `*.example.com`. */
async function startTlsGateway(options: { redirectHttp?: boolean; headersTimeoutMs?: number; challenges?: Record<string, string> } = {}) {
  const member = await startUpstream((req, res) => res.end(`${req.headers.host} via ${req.headers['x-forwarded-proto']}`));
  const generated = await createSelfSignedCertificate(['gateway.test']);
  const routing = new RoutingStateBuilder();
  routing.setGatewayCertificates(
    new Map([
      ['default', { source: 'default', origin: 'default', certPem: generated.certPem, keyPem: generated.keyPem, servedFor: [] }],
      ['operator:www.pem', spec(['www.example.com'], 'operator', 'www.pem')],
      ['operator:wild.pem', spec(['*.example.com'], 'operator', 'wild.pem')],
    ]),
  );
  const route = (fqdn: string) => ({ fqdn, cluster: `c:${fqdn}`, members: [member.address], rewrite: null, source: 'static' as const });
  routing.setStatic(['www.example.com', '*.example.com', 'plain.test', 'shop.test'].map(route));
  const { log: collected, logs } = collectingLogger();
  const dataPlane = new DataPlane({ balancer: 'least-outstanding' });
  dataPlane.apply(routing.snapshot());
  const gateway = new Gateway({
    limits: { ...TEST_LIMITS, ...(options.headersTimeoutMs ? { headersTimeoutMs: options.headersTimeoutMs } : {}) },
    routes: dataPlane.routes,
    log: collected,
    accessLog: false,
    certificates: () => dataPlane.certificates,
    ...(options.redirectHttp === undefined ? {} : { redirectHttp: options.redirectHttp }),
    ...(options.challenges === undefined ? {} : { acmeChallenge: (token: string) => options.challenges?.[token] }),
  });
  const httpsPort = await gateway.listenHttps({ host: '127.0.0.1', port: 0 });
  const httpPort = await gateway.listenHttp({ host: '127.0.0.1', port: 0 });
  onTestFinished(() => gateway.close(200));
  const apply = () => dataPlane.apply(routing.snapshot());
  return { gateway, httpsPort, httpPort, routing, apply, logs, route };
}

/** The certificate the listener presents for `servername` (undefined: no SNI). */
async function presented(port: number, servername: string | undefined): Promise<PeerCertificate> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
  await once(socket, 'secureConnect');
  const cert = socket.getPeerCertificate();
  socket.destroy();
  return cert;
}

/** One HTTPS request with a chosen SNI and Host, on a fresh connection. */
async function httpsGet(port: number, servername: string | undefined, host: string, path = '/'): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false, rejectUnauthorized: false, servername: servername ?? '' });
  req.setTimeout(5_000, () => req.destroy(new Error('timed out')));
  req.end();
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  let body = '';
  for await (const chunk of res) body += String(chunk);
  return { status: res.statusCode ?? 0, body, headers: res.headers };
}

describe('HTTPS listener', () => {
  it('presents the certificate chosen by SNI: exact, then one-label wildcard, then the default', async () => {
    const { httpsPort } = await startTlsGateway();
    expect((await presented(httpsPort, 'www.example.com')).subjectaltname).toBe('DNS:www.example.com');
    expect((await presented(httpsPort, 'shop.example.com')).subjectaltname).toBe('DNS:*.example.com');
    expect((await presented(httpsPort, 'WWW.Example.COM')).subjectaltname).toBe('DNS:www.example.com');
    expect((await presented(httpsPort, 'a.b.example.com')).subjectaltname).toBe('DNS:gateway.test');
    expect((await presented(httpsPort, 'unknown.test')).subjectaltname).toBe('DNS:gateway.test');
    expect((await presented(httpsPort, undefined)).subjectaltname).toBe('DNS:gateway.test');
  });

  it('serves a session certificate while its route is published, and stops when it is unpublished', async () => {
    const { httpsPort, routing, apply, route } = await startTlsGateway();
    routing.putSession({ ...route('shop.test'), source: 'session' }, spec(['shop.test'], 'session'));
    apply();
    expect((await presented(httpsPort, 'shop.test')).subjectaltname).toBe('DNS:shop.test');
    routing.removeSession('shop.test');
    apply();
    expect((await presented(httpsPort, 'shop.test')).subjectaltname).toBe('DNS:gateway.test');
  });

  it('routes by Host and tells the member the request came over HTTPS', async () => {
    const { httpsPort } = await startTlsGateway();
    expect(await httpsGet(httpsPort, 'www.example.com', 'www.example.com')).toMatchObject({ status: 200, body: 'www.example.com via https' });
    // A published name without a certificate of its own is still reachable: Host equal to SNI.
    expect(await httpsGet(httpsPort, 'plain.test', 'plain.test')).toMatchObject({ status: 200, body: 'plain.test via https' });
    // No SNI: routed by Host as usual.
    expect(await httpsGet(httpsPort, undefined, 'plain.test')).toMatchObject({ status: 200 });
  });

  it('answers 421 when the Host is not covered by the certificate presented for the SNI', async () => {
    const { httpsPort } = await startTlsGateway();
    const misdirected = await httpsGet(httpsPort, 'www.example.com', 'plain.test');
    expect(misdirected.status).toBe(421);
    expect(misdirected.body).toContain('opened for www.example.com');
    // The wildcard certificate presented for shop.example.com covers blog.example.com: reuse is fine.
    expect((await httpsGet(httpsPort, 'shop.example.com', 'blog.example.com')).status).toBe(200);
    // The default certificate covers neither: another site on that connection is misdirected.
    expect((await httpsGet(httpsPort, 'plain.test', 'www.example.com')).status).toBe(421);
  });

  it('checks a reused connection against the certificate it presented, even after the certificates changed', async () => {
    const { httpsPort, routing, apply } = await startTlsGateway();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: httpsPort, path: '/', headers: { host }, agent, rejectUnauthorized: false, servername: 'www.example.com' }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get('www.example.com')).toBe(200);
    // www.example.com now falls to the wildcard certificate, which covers blog.example.com; the open
    // connection presented the www-only certificate, so blog.example.com is still misdirected on it.
    const { certificates } = routing.snapshot();
    routing.setGatewayCertificates(new Map(Object.entries(certificates!).filter(([key]) => key !== 'operator:www.pem')));
    apply();
    expect(await get('blog.example.com')).toBe(421);
  });

  it('refuses TLS 1.1 and survives garbage instead of a ClientHello', async () => {
    const { httpsPort, logs } = await startTlsGateway();
    const old = tlsConnect({ host: '127.0.0.1', port: httpsPort, rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0', servername: 'www.example.com' });
    const [err] = (await once(old, 'error')) as [Error];
    expect(err.message).toMatch(/protocol|version|alert/i);

    const plainHttp = await rawRequest(httpsPort, 'GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n');
    expect(plainHttp).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*this port speaks HTTPS/);
    expect(await rawRequest(httpsPort, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]))).toBe('');
    expect(await rawRequest(httpsPort, Buffer.from('\u0000\u0001\u0002garbage'))).toBe('');
    expect(logs.some((line) => line.msg === 'TLS handshake failed')).toBe(true);
    expect((await httpsGet(httpsPort, 'www.example.com', 'www.example.com')).status).toBe(200);
  });

  it('closes at once, even with connections that are still in (or cut during) their TLS handshake', async () => {
    const { gateway, httpsPort } = await startTlsGateway({ headersTimeoutMs: 10_000 });
    const silent = netConnect(httpsPort, '127.0.0.1');
    silent.on('error', () => {});
    await once(silent, 'connect');
    // A client that completes its handshake and resets the connection straight away.
    const reset = tlsConnect({ host: '127.0.0.1', port: httpsPort, servername: 'www.example.com', rejectUnauthorized: false });
    reset.on('error', () => {});
    await once(reset, 'secureConnect');
    reset.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await gateway.close(5_000);
    expect(Date.now() - started).toBeLessThan(1_000);
    silent.destroy();
  });

  it('negotiates at least TLS 1.2', async () => {
    const { httpsPort } = await startTlsGateway();
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port: httpsPort, rejectUnauthorized: false, servername: 'www.example.com' });
    await once(socket, 'secureConnect');
    expect(['TLSv1.2', 'TLSv1.3']).toContain(socket.getProtocol());
    socket.destroy();
  });
});

describe('HTTP to HTTPS redirect', () => {
  it('sends names with a certificate of their own to HTTPS with 308, but not ACME challenges nor other names', async () => {
    const { httpPort, httpsPort } = await startTlsGateway();
    const redirected = await httpRequest(httpPort, { host: 'www.example.com:80', path: '/a/b?c=d' });
    expect(redirected.status).toBe(308);
    expect(redirected.headers.location).toBe(`https://www.example.com:${httpsPort}/a/b?c=d`);
    expect((await httpRequest(httpPort, { host: 'shop.example.com' })).status).toBe(308);
    expect((await httpRequest(httpPort, { host: 'www.example.com', path: '/.well-known/acme-challenge/token' })).status).toBe(200);
    expect(await httpRequest(httpPort, { host: 'plain.test' })).toMatchObject({ status: 200, body: 'plain.test via http' });
  });

  it('answers ACME challenges it holds, and forwards any other token, Object.prototype names included', async () => {
    const { httpPort } = await startTlsGateway({ challenges: { 'tok-1': 'tok-1.thumbprint' } });
    const held = await httpRequest(httpPort, { host: 'plain.test', path: '/.well-known/acme-challenge/tok-1' });
    expect(held).toMatchObject({ status: 200, body: 'tok-1.thumbprint' });
    for (const token of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const other = await httpRequest(httpPort, { host: 'plain.test', path: `/.well-known/acme-challenge/${token}` });
      expect(other).toMatchObject({ status: 200, body: 'plain.test via http' });
    }
  });

  it('is off with redirectHttp false', async () => {
    const { httpPort } = await startTlsGateway({ redirectHttp: false });
    expect(await httpRequest(httpPort, { host: 'www.example.com' })).toMatchObject({ status: 200, body: 'www.example.com via http' });
  });
});
