import { describe, expect, it } from 'vitest';
import { Cluster, LeastOutstandingBalancer, RoundRobinBalancer, Upstream, UpstreamRegistry, parseMemberAddress, refusedMemberIp } from '../../src/upstreams/index.js';
import type { Balancer } from '../../src/upstreams/index.js';

function members(count: number): Upstream[] {
  return Array.from({ length: count }, (_, i) => {
    const parsed = parseMemberAddress(`10.0.0.${i + 1}:80`);
    if (!parsed.ok) throw new Error(parsed.reason);
    return new Upstream(parsed.value);
  });
}

const balancers: [string, () => Balancer][] = [
  ['least-outstanding', () => new LeastOutstandingBalancer()],
  ['round-robin', () => new RoundRobinBalancer()],
];

describe.each(balancers)('%s balancer (shared contract)', (_name, create) => {
  it('spreads idle traffic evenly over every member', () => {
    const pool = members(3);
    const balancer = create();
    const counts = new Map<Upstream, number>();
    for (let i = 0; i < 300; i++) {
      const picked = balancer.pick(pool, 0)!;
      counts.set(picked, (counts.get(picked) ?? 0) + 1);
    }
    expect([...counts.values()]).toEqual([100, 100, 100]);
  });

  it('skips ejected members and the excluded one', () => {
    const pool = members(3);
    pool[0]!.recordFailure(1_000);
    const balancer = create();
    for (let i = 0; i < 20; i++) {
      const picked = balancer.pick(pool, 1_500, pool[1]);
      expect(picked).toBe(pool[2]);
    }
  });

  it('returns undefined when no member is available or there are none', () => {
    const pool = members(2);
    for (const member of pool) member.recordFailure(0);
    expect(create().pick(pool, 10)).toBeUndefined();
    expect(create().pick([], 10)).toBeUndefined();
  });

  it('takes an ejected member back once its back-off is over', () => {
    const [only] = members(1);
    only!.recordFailure(0);
    expect(create().pick([only!], 999)).toBeUndefined();
    expect(create().pick([only!], 1_000)).toBe(only);
  });

  it('skips members failing their health checks and members at their in-flight cap', () => {
    const capped = (address: string): Upstream => {
      const parsed = parseMemberAddress(address);
      if (!parsed.ok) throw new Error(parsed.reason);
      return new Upstream(parsed.value, undefined, 2);
    };
    const pool = [capped('10.0.1.1:80'), capped('10.0.1.2:80'), capped('10.0.1.3:80')];
    pool[0]!.setHealthy(false);
    pool[1]!.inFlight = 2;
    const balancer = create();
    for (let i = 0; i < 10; i++) expect(balancer.pick(pool, 0)).toBe(pool[2]);
    pool[2]!.inFlight = 2;
    expect(balancer.pick(pool, 0)).toBeUndefined();
    pool[0]!.setHealthy(true);
    expect(balancer.pick(pool, 0)).toBe(pool[0]);
  });
});

describe('LeastOutstandingBalancer', () => {
  it('prefers the member with the fewest requests in flight', () => {
    const pool = members(3);
    pool[0]!.inFlight = 5;
    pool[1]!.inFlight = 1;
    pool[2]!.inFlight = 3;
    const balancer = new LeastOutstandingBalancer();
    for (let i = 0; i < 10; i++) expect(balancer.pick(pool, 0)).toBe(pool[1]);
  });
});

describe('Upstream ejection back-off', () => {
  it('starts at 1 s, doubles per consecutive failure, caps at 30 s, resets on success', () => {
    const [member] = members(1);
    const periods: number[] = [];
    let now = 0;
    for (let i = 0; i < 8; i++) {
      // Each failure comes when the previous ejection is over (the member was tried again).
      now = member!.ejectedUntil;
      member!.recordFailure(now);
      periods.push(member!.ejectedUntil - now);
    }
    expect(periods).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    member!.recordSuccess();
    now = member!.ejectedUntil;
    member!.recordFailure(now);
    expect(member!.ejectedUntil - now).toBe(1_000);
  });

  it('counts a burst of failures during one ejection once (requests queued on a dead member fail together)', () => {
    const [member] = members(1);
    for (let i = 0; i < 40; i++) member!.recordFailure(i);
    expect(member!.consecutiveFailures).toBe(1);
    expect(member!.ejectedUntil).toBe(1_000);
  });
});

describe('Cluster and registry', () => {
  it('keeps one Upstream object per address while any route uses it', () => {
    const registry = new UpstreamRegistry();
    const a = registry.acquire('127.0.0.1:8080');
    expect(registry.acquire('127.0.0.1:8080')).toBe(a);
    const b = registry.acquire('LOCALHOST:81');
    expect(b.address).toBe('localhost:81');
    expect(registry.peek('localhost:81')).toBe(b);
    expect(registry.release(b)).toBe(true);
    expect(registry.release(a)).toBe(false);
    expect([...registry.all()]).toEqual([a]);
    expect(registry.release(a)).toBe(true);
    expect([...registry.all()]).toEqual([]);
    expect(registry.acquire('127.0.0.1:8080')).not.toBe(a);
    const cluster = new Cluster([b], () => new RoundRobinBalancer());
    expect(cluster.pick(0)).toBe(b);
  });
});

describe('parseMemberAddress', () => {
  it.each([
    ['10.0.0.5:8080', '10.0.0.5:8080'],
    ['10.0.0.5', '10.0.0.5:80'],
    ['Web.Internal:81', 'web.internal:81'],
    ['[::1]:9000', '[::1]:9000'],
    ['[::1]', '[::1]:80'],
  ])('%s → %s', (text, address) => {
    const parsed = parseMemberAddress(text);
    expect(parsed.ok && parsed.value.address).toBe(address);
  });

  it.each(['', 'host:', 'host:0', 'host:70000', 'host:http', '::1', 'bad host:80', 'a:b:c'])('rejects %j', (text) => {
    expect(parseMemberAddress(text).ok).toBe(false);
  });

  it.each(['169.254.169.254:80', '169.254.0.1', '0.0.0.0:8080', '0.1.2.3:80', '[fe80::1]:80', '[::]:80', '[::ffff:169.254.169.254]:80', '[fd00:ec2::254]:80'])(
    'refuses %j: link-local, unspecified or cloud metadata, whoever publishes it',
    (text) => {
      const parsed = parseMemberAddress(text);
      expect(parsed.ok).toBe(false);
      expect(!parsed.ok && parsed.reason).toMatch(/link-local, unspecified or cloud metadata address/);
    },
  );

  it.each(['0:80', '0x0:8080', '00.0.0.0:80', '2852039166:80', '0xa9.0xfe.0xa9.0xfe', '127.1:80', '0177.0.0.1:80', '010.0.0.5'])(
    'refuses %j: an IPv4 address in shorthand would pass as a name and reach what it stands for',
    (text) => {
      const parsed = parseMemberAddress(text);
      expect(parsed.ok).toBe(false);
      expect(!parsed.ok && parsed.reason).toMatch(/an IPv4 address in shorthand/);
    },
  );

  it.each(['127.0.0.1:80', '10.0.0.1:80', '172.17.0.2:80', '192.168.1.1:80', '[::1]:80', '[fd00::1]:80', '[::ffff:10.0.0.1]:80', 'localhost:80', '0x.example:80', '3com.example', 'a1.b2:80'])('still accepts %j', (text) => {
    expect(parseMemberAddress(text).ok).toBe(true);
  });
});

describe('refusedMemberIp', () => {
  it('judges addresses as a connected socket reports them, IPv4-mapped ones as IPv4', () => {
    expect(refusedMemberIp('169.254.169.254')).toMatch(/169\.254\.169\.254/);
    expect(refusedMemberIp('::ffff:169.254.1.2')).toMatch(/169\.254\.1\.2/);
    expect(refusedMemberIp('fe80::abcd')).toBeDefined();
    expect(refusedMemberIp('127.0.0.1')).toBeUndefined();
    expect(refusedMemberIp('::ffff:127.0.0.1')).toBeUndefined();
    expect(refusedMemberIp('not-an-address')).toBeUndefined();
  });
});
