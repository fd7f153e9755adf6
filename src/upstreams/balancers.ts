import type { Upstream } from './upstream.js';

/** Chooses a member for one request among those that can take it now (available, under their cap), skipping `exclude` (the member a retry left). */
export interface Balancer {
  pick(members: readonly Upstream[], now: number, exclude?: Upstream): Upstream | undefined;
}

/** The balancing algorithms an operator can choose. */
export type BalancerName = 'least-outstanding' | 'round-robin';

export const BALANCER_NAMES: readonly BalancerName[] = ['least-outstanding', 'round-robin'];

/** Fewest in-flight requests; ties broken round robin (the scan starts one member further each time). */
export class LeastOutstandingBalancer implements Balancer {
  #cursor = 0;

  pick(members: readonly Upstream[], now: number, exclude?: Upstream): Upstream | undefined {
    const count = members.length;
    if (count === 0) return undefined;
    const start = this.#cursor++ % count;
    if (this.#cursor >= 0x3fffffff) this.#cursor = 0;
    let best: Upstream | undefined;
    for (let i = 0; i < count; i++) {
      const member = members[(start + i) % count]!;
      if (member === exclude || !member.canTake(now)) continue;
      if (best === undefined || member.inFlight < best.inFlight) best = member;
    }
    return best;
  }
}

/** Each available member in turn. */
export class RoundRobinBalancer implements Balancer {
  #cursor = 0;

  pick(members: readonly Upstream[], now: number, exclude?: Upstream): Upstream | undefined {
    const count = members.length;
    for (let i = 0; i < count; i++) {
      const member = members[this.#cursor++ % count]!;
      if (this.#cursor >= 0x3fffffff) this.#cursor = 0;
      if (member !== exclude && member.canTake(now)) return member;
    }
    return undefined;
  }
}

/** A fresh balancer of the named kind (each cluster has its own cursor). */
export function createBalancer(name: BalancerName): Balancer {
  return name === 'round-robin' ? new RoundRobinBalancer() : new LeastOutstandingBalancer();
}
