import { describe, expect, it } from 'vitest';
import { RouteTable, RouteTableRef } from '../../src/vhost/index.js';

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

describe('RouteTable.derive', () => {
  it('makes a new version with routes set and removed, leaving the original as it was', () => {
    const v1 = new RouteTable(1, [['a.test', 'a'], ['*.w.test', 'w'], ['b.test', 'b']]);
    const v2 = v1.derive(2, [['c.test', 'c'], ['*.w.test', 'w2']], ['b.test', '*.gone.test']);
    expect(v2.version).toBe(2);
    expect([v2.lookup('a.test'), v2.lookup('b.test'), v2.lookup('c.test'), v2.lookup('x.w.test')]).toEqual(['a', undefined, 'c', 'w2']);
    expect([v1.lookup('b.test'), v1.lookup('c.test'), v1.lookup('x.w.test')]).toEqual(['b', undefined, 'w']);
    expect(v2.size).toBe(3);
    expect(new Map(v2.entries())).toEqual(new Map([['a.test', 'a'], ['c.test', 'c'], ['*.w.test', 'w2']]));
  });
});
