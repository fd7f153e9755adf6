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
