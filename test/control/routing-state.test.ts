import { describe, expect, it } from 'vitest';
import { RoutingStateBuilder } from '../../src/control/routing-state.js';
import { DataPlane } from '../../src/gateway/data-plane.js';
import type { CertificateSpec, RouteSpec } from '../../src/vhost/index.js';
import { makeCertificate } from '../helpers/certs.js';

const route = (fqdn: string, source: RouteSpec['source'] = 'session'): RouteSpec => ({ fqdn, cluster: `c-${fqdn}`, members: ['127.0.0.1:9'], rewrite: null, source });

function certificate(names: string[], source: CertificateSpec['source'], origin = names[0] ?? 'default'): CertificateSpec {
  const cert = makeCertificate({ names });
  return { source, certPem: cert.certPem, keyPem: cert.keyPem, origin, servedFor: source === 'default' ? [] : names };
}

describe('RoutingStateBuilder', () => {
  it('bumps the version on every change and builds a frozen snapshot once per change', () => {
    const builder = new RoutingStateBuilder();
    builder.setStatic([route('static.test', 'static')]);
    builder.putSession(route('a.test'));
    const first = builder.snapshot();
    expect(builder.snapshot()).toBe(first);
    expect(Object.keys(first.routes).sort()).toEqual(['a.test', 'static.test']);
    expect(Object.isFrozen(first.routes)).toBe(true);
    expect(builder.removeSession('a.test')).toBe(true);
    expect(builder.removeSession('a.test')).toBe(false);
    const second = builder.snapshot();
    expect(second.version).toBeGreaterThan(first.version);
    expect(second.routes['a.test']).toBeUndefined();
    expect(builder.isStatic('static.test')).toBe(true);
  });

  it('keeps the certificates object while certificates do not change, and drops a session certificate with its route', () => {
    const builder = new RoutingStateBuilder();
    builder.setGatewayCertificates(new Map([['default', certificate(['localhost'], 'default')]]));
    const before = builder.snapshot().certificates;
    builder.putSession(route('a.test'));
    expect(builder.snapshot().certificates).toBe(before);
    builder.putSession(route('b.test'), certificate(['b.test'], 'session'));
    expect(Object.keys(builder.snapshot().certificates!).sort()).toEqual(['default', 'session:b.test']);
    builder.putSession(route('b.test'), null);
    expect(Object.keys(builder.snapshot().certificates!)).toEqual(['default']);
    builder.putSession(route('b.test'), certificate(['b.test'], 'session'));
    builder.removeSession('b.test');
    expect(Object.keys(builder.snapshot().certificates!)).toEqual(['default']);
  });
});

describe('DataPlane certificates', () => {
  it('serves session, operator and default certificates by servername from the state', () => {
    const builder = new RoutingStateBuilder();
    const plane = new DataPlane({ balancer: 'least-outstanding' });
    plane.apply(builder.snapshot());
    expect(plane.certificates).toBeUndefined();
    builder.setGatewayCertificates(
      new Map([
        ['default', certificate(['localhost'], 'default')],
        ['operator:wild.pem', certificate(['*.example.com'], 'operator', 'wild.pem')],
      ]),
    );
    builder.putSession(route('shop.example.com'), certificate(['shop.example.com'], 'session'));
    plane.apply(builder.snapshot());
    expect(plane.certificates?.lookup('shop.example.com').source).toBe('session');
    expect(plane.certificates?.lookup('blog.example.com').origin).toBe('wild.pem');
    expect(plane.certificates?.lookup('other.test').source).toBe('default');
    const store = plane.certificates;
    builder.putSession(route('x.test'));
    plane.apply(builder.snapshot());
    expect(plane.certificates).toBe(store);
    builder.removeSession('shop.example.com');
    plane.apply(builder.snapshot());
    expect(plane.certificates?.lookup('shop.example.com').origin).toBe('wild.pem');
  });
});
