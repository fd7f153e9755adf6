import { describe, expect, it } from 'vitest';
import { decodeRouteSpecs, encodeRouteSpecs } from '../../src/vhost/index.js';
import type { RouteSpec } from '../../src/vhost/index.js';

const specs: RouteSpec[] = [
  { fqdn: 'www.example.com', cluster: '9f0c2a', members: ['10.0.0.1:80', '[2001:db8::1]:8080'], rewrite: null, source: 'session' },
  { fqdn: '*.apps.example.com', cluster: 'static:*.apps.example.com', members: ['127.0.0.1:3000'], rewrite: 'internal.example.com:8080', source: 'static' },
  { fqdn: 'xn--bcher-kva.example', cluster: 'c', members: [], rewrite: null, source: 'session' },
];

describe('route specs on the wire to workers', () => {
  it('decodes what it encoded: members in order (IPv6 too), rewrite or null, source, a cluster with no members', () => {
    expect([...decodeRouteSpecs(encodeRouteSpecs(specs))]).toEqual(specs);
  });

  it('survives the structured clone IPC uses (a Uint8Array arrives, not a Buffer)', () => {
    const cloned = structuredClone(new Uint8Array(encodeRouteSpecs(specs)));
    expect([...decodeRouteSpecs(cloned)]).toEqual(specs);
  });

  it('encodes an empty table as nothing, and decodes nothing as no routes', () => {
    expect(encodeRouteSpecs([]).length).toBe(0);
    expect([...decodeRouteSpecs(new Uint8Array())]).toEqual([]);
  });

  it('refuses a field holding a separator rather than sending a table that decodes differently', () => {
    expect(() => encodeRouteSpecs([{ ...specs[0]!, cluster: 'a\tb' }])).toThrow(/cannot be encoded/);
    expect(() => encodeRouteSpecs([{ ...specs[0]!, rewrite: 'a\nb' }])).toThrow(/cannot be encoded/);
    expect(() => encodeRouteSpecs([{ ...specs[0]!, members: ['10.0.0.1:80,10.0.0.2:80'] }])).toThrow(/cannot be encoded/);
  });

  it('refuses a malformed message instead of installing half of it', () => {
    expect(() => [...decodeRouteSpecs(Buffer.from('www.example.com\tc\t\tsession\t10.0.0.1:80\nbroken line'))]).toThrow(/malformed route line/);
    expect(() => [...decodeRouteSpecs(Buffer.from('a.test\tc\t\tother\t10.0.0.1:80'))]).toThrow(/source/);
  });
});
