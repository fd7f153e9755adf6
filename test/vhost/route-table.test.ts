import { describe, expect, it } from 'vitest';
import { RouteTable, RouteTableRef, compileRoutes } from '../../src/vhost/index.js';
import type { RouteSpec, RoutingState } from '../../src/vhost/index.js';

describe('RouteTable', () => {
  const table = new RouteTable(1, [
    ['www.example.com', 'www'],
    ['*.example.com', 'wild'],
    ['*.apps.example.com', 'apps'],
    ['exact.apps.example.com', 'exact'],
  ]);

  it('prefers an exact name over a wildcard', () => {
    expect(table.lookup('www.example.com')).toBe('www');
    expect(table.lookup('exact.apps.example.com')).toBe('exact');
  });

  it('matches a wildcard on exactly one label', () => {
    expect(table.lookup('a.example.com')).toBe('wild');
    expect(table.lookup('a.apps.example.com')).toBe('apps');
    expect(table.lookup('apps.example.com')).toBe('wild');
    expect(table.lookup('a.b.c.example.com')).toBeUndefined();
    expect(table.lookup('example.com')).toBeUndefined();
  });

  it('misses unknown names and single labels', () => {
    expect(table.lookup('other.test')).toBeUndefined();
    expect(table.lookup('localhost')).toBeUndefined();
    expect(table.lookup('')).toBeUndefined();
  });

  it('lists its entries and is frozen', () => {
    expect(new Map(table.entries()).get('*.apps.example.com')).toBe('apps');
    expect(table.size).toBe(4);
    expect(Object.isFrozen(table)).toBe(true);
  });
});

describe('RouteTableRef', () => {
  it('swaps in newer tables only; a reader keeps the table it read', () => {
    const ref = new RouteTableRef<string>();
    const v2 = new RouteTable(2, [['a.test', 'two']]);
    ref.swap(v2);
    const held = ref.current;
    ref.swap(new RouteTable(1, [['a.test', 'one']]));
    expect(ref.current.lookup('a.test')).toBe('two');
    ref.swap(new RouteTable(3, []));
    expect(ref.current.lookup('a.test')).toBeUndefined();
    expect(held.lookup('a.test')).toBe('two');
  });
});

describe('compileRoutes', () => {
  it('builds one runtime route per spec, keyed by fqdn', () => {
    const spec = (fqdn: string): RouteSpec => ({ fqdn, cluster: `c-${fqdn}`, members: ['127.0.0.1:1'], rewrite: null, source: 'static' });
    const state: RoutingState = { version: 7, routes: { 'a.test': spec('a.test'), '*.w.test': spec('*.w.test') } };
    const table = compileRoutes(state, (s) => s.cluster);
    expect(table.version).toBe(7);
    expect(table.lookup('a.test')).toBe('c-a.test');
    expect(table.lookup('x.w.test')).toBe('c-*.w.test');
  });
});
