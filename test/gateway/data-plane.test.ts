import { describe, expect, it } from 'vitest';
import { DataPlane } from '../../src/gateway/data-plane.js';
import type { Upstream } from '../../src/upstreams/index.js';
import type { RouteSpec, RoutingState } from '../../src/vhost/index.js';

const spec = (fqdn: string, members: string[], cluster = `c-${fqdn}`): RouteSpec => ({ fqdn, cluster, members, rewrite: null, source: 'session' });
const state = (version: number, ...specs: RouteSpec[]): RoutingState => ({ version, routes: Object.fromEntries(specs.map((s) => [s.fqdn, s])) });

describe('DataPlane', () => {
  it('compiles and swaps in each new version, ignoring older ones', () => {
    const plane = new DataPlane({ balancer: 'least-outstanding' });
    plane.apply(state(1, spec('a.test', ['127.0.0.1:1'])));
    expect(plane.routes.current.lookup('a.test')?.cluster.members.map((m) => m.address)).toEqual(['127.0.0.1:1']);
    plane.apply(state(3, spec('b.test', ['127.0.0.1:2'])));
    plane.apply(state(2, spec('a.test', ['127.0.0.1:1'])));
    expect(plane.version).toBe(3);
    expect(plane.routes.current.lookup('a.test')).toBeUndefined();
    expect(plane.routes.current.lookup('b.test')).toBeDefined();
  });

  it('keeps live member counters and unchanged clusters across versions', () => {
    const plane = new DataPlane({ balancer: 'round-robin' });
    plane.apply(state(1, spec('a.test', ['127.0.0.1:1']), spec('b.test', ['127.0.0.1:1', '127.0.0.1:2'])));
    const routeA = plane.routes.current.lookup('a.test')!;
    const member = routeA.cluster.members[0]!;
    member.inFlight = 3;
    plane.apply(state(2, spec('a.test', ['127.0.0.1:1']), spec('b.test', ['127.0.0.1:2', '127.0.0.1:1'])));
    expect(plane.routes.current.lookup('a.test')).toBe(routeA);
    const routeB = plane.routes.current.lookup('b.test')!;
    expect(routeB.cluster.members[1]).toBe(member);
    expect(member.inFlight).toBe(3);
  });

  it('hands members no route uses any more to onMembersDropped', () => {
    const dropped: Upstream[][] = [];
    const plane = new DataPlane({ balancer: 'least-outstanding', onMembersDropped: (d) => dropped.push(d) });
    plane.apply(state(1, spec('a.test', ['127.0.0.1:1', '127.0.0.1:2'])));
    plane.apply(state(2, spec('a.test', ['127.0.0.1:2'])));
    expect(dropped.map((d) => d.map((m) => m.address))).toEqual([['127.0.0.1:1']]);
    plane.apply(state(3));
    expect(dropped.at(-1)?.map((m) => m.address)).toEqual(['127.0.0.1:2']);
  });
});

describe('DataPlane whole tables (as workers get them)', () => {
  it('installs a decoded table like the same state, keeping unchanged routes and releasing dropped members', async () => {
    const { decodeRouteSpecs, encodeRouteSpecs } = await import('../../src/vhost/index.js');
    const dropped: string[] = [];
    const plane = new DataPlane({ balancer: 'round-robin', onMembersDropped: (d) => dropped.push(...d.map((m) => m.address)) });
    const first = [spec('a.test', ['127.0.0.1:1']), spec('b.test', ['127.0.0.1:2']), spec('c.test', ['127.0.0.1:3'])];
    plane.applyWhole(1, decodeRouteSpecs(encodeRouteSpecs(first)), undefined);
    const routeA = plane.routes.current.lookup('a.test')!;
    const routeB = plane.routes.current.lookup('b.test')!;
    // b gets a rewrite, c goes, d arrives, a is republished under another cluster id with the same
    // members: a is kept whole (a worker runs members and rewrite, not ids).
    const second = [
      spec('a.test', ['127.0.0.1:1'], 'republished'),
      { ...spec('b.test', ['127.0.0.1:2']), rewrite: 'inner.test' },
      spec('d.test', ['127.0.0.1:1']),
    ];
    plane.applyWhole(2, decodeRouteSpecs(encodeRouteSpecs(second)), undefined);
    expect(plane.version).toBe(2);
    expect(plane.routes.current.lookup('a.test')).toBe(routeA);
    expect(plane.routes.current.lookup('b.test')).not.toBe(routeB);
    expect(plane.routes.current.lookup('b.test')!.rewrite).toBe('inner.test');
    expect(plane.routes.current.lookup('b.test')!.cluster.members[0]).toBe(routeB.cluster.members[0]);
    expect(plane.routes.current.lookup('c.test')).toBeUndefined();
    expect(plane.routes.current.lookup('d.test')!.cluster.members[0]).toBe(routeA.cluster.members[0]);
    expect(dropped).toEqual(['127.0.0.1:3']);
    // An older whole table is ignored; then the changes path carries on from the whole table.
    plane.applyWhole(1, first, undefined);
    expect(plane.routes.current.lookup('c.test')).toBeUndefined();
    expect(plane.applyChanges(3, { base: 2, upserts: [], removals: ['d.test'] }, undefined)).toBe(true);
    expect(plane.routes.current.size).toBe(2);
    expect(dropped).toEqual(['127.0.0.1:3']); // 127.0.0.1:1 is still a's
  });
});

describe('DataPlane whole tables that fail midway', () => {
  it('leaves the routes in force as they were, so later changes still apply and release members', () => {
    const dropped: string[] = [];
    const plane = new DataPlane({ balancer: 'round-robin', onMembersDropped: (d) => dropped.push(...d.map((m) => m.address)) });
    plane.applyWhole(1, [spec('a.test', ['127.0.0.1:1']), spec('b.test', ['127.0.0.1:2'])], undefined);
    function* broken(): Generator<RouteSpec> {
      yield spec('a.test', ['127.0.0.1:1']);
      throw new Error('malformed route line');
    }
    expect(() => plane.applyWhole(2, broken(), undefined)).toThrow(/malformed/);
    expect(plane.version).toBe(1);
    expect(plane.routes.current.lookup('a.test')).toBeDefined();
    expect(plane.applyChanges(2, { base: 1, upserts: [], removals: ['a.test'] }, undefined)).toBe(true);
    expect(plane.routes.current.lookup('a.test')).toBeUndefined();
    expect(dropped).toEqual(['127.0.0.1:1']);
  });
});

describe('DataPlane changes', () => {
  it('applies a builder snapshot as changes when it runs their base, and as a whole otherwise, with the same result', async () => {
    const { RoutingStateBuilder } = await import('../../src/control/routing-state.js');
    const builder = new RoutingStateBuilder();
    const incremental = new DataPlane({ balancer: 'least-outstanding' });
    const dropped: string[] = [];
    const tracked = new DataPlane({ balancer: 'least-outstanding', onMembersDropped: (d) => dropped.push(...d.map((m) => m.address)) });
    builder.setStatic([spec('static.test', ['127.0.0.1:1'])]);
    for (const plane of [incremental, tracked]) plane.apply(builder.snapshot());
    const staticRoute = incremental.routes.current.lookup('static.test');
    for (let i = 0; i < 50; i++) {
      builder.putSession(spec(`s${i % 7}.test`, [`127.0.0.1:${10 + (i % 3)}`], `c${i}`));
      if (i % 5 === 0) builder.removeSession(`s${(i + 3) % 7}.test`);
      const state = builder.snapshot();
      expect(state.changes?.base).toBe(incremental.version);
      incremental.apply(state);
      tracked.apply(state);
    }
    // A plane that starts late gets the whole state and ends up the same.
    const late = new DataPlane({ balancer: 'least-outstanding' });
    late.apply(builder.snapshot());
    const describe = (plane: DataPlane) => [...plane.routes.current.entries()].map(([fqdn, route]) => [fqdn, route.rewrite, route.cluster.members.map((m) => m.address)]).sort();
    expect(describe(incremental)).toEqual(describe(late));
    expect(Object.keys(builder.snapshot().routes).sort()).toEqual(describe(late).map(([fqdn]) => fqdn));
    expect(incremental.routes.current.lookup('static.test')).toBe(staticRoute);
    // The registry holds exactly the members some route uses; the others were handed over to be closed.
    const inUse = new Set(describe(tracked).flatMap(([, , members]) => members as string[]));
    expect([...tracked.registry.all()].map((m) => m.address).sort()).toEqual([...inUse].sort());
    expect(dropped).toEqual([]);
    for (let i = 0; i < 7; i++) builder.removeSession(`s${i}.test`);
    tracked.apply(builder.snapshot());
    expect(dropped.sort()).toEqual(['127.0.0.1:10', '127.0.0.1:11', '127.0.0.1:12']);
    expect([...tracked.registry.all()].map((m) => m.address)).toEqual(['127.0.0.1:1']);
  });

  it('refuses changes whose base it does not run, so the whole state is sent instead', () => {
    const plane = new DataPlane({ balancer: 'least-outstanding' });
    plane.apply(state(4, spec('a.test', ['127.0.0.1:1'])));
    expect(plane.applyChanges(6, { base: 5, upserts: [spec('b.test', ['127.0.0.1:2'])], removals: [] }, undefined)).toBe(false);
    expect(plane.routes.current.lookup('b.test')).toBeUndefined();
    expect(plane.applyChanges(5, { base: 4, upserts: [spec('b.test', ['127.0.0.1:2'])], removals: ['a.test'] }, undefined)).toBe(true);
    expect(plane.routes.current.lookup('a.test')).toBeUndefined();
    expect(plane.routes.current.lookup('b.test')?.cluster.members[0]?.address).toBe('127.0.0.1:2');
    expect(plane.version).toBe(5);
  });
});
