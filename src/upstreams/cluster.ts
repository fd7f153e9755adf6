import type { Balancer } from './balancers.js';
import type { Upstream } from './upstream.js';

/** A published cluster: its id, its members and the balancer that spreads requests over them. */
export class Cluster {
  constructor(
    readonly id: string,
    readonly members: readonly Upstream[],
    readonly balancer: Balancer,
  ) {
    Object.freeze(this.members);
  }

  /** A member for the next request, or undefined when none is available (all ejected, or no members). */
  pick(now: number, exclude?: Upstream): Upstream | undefined {
    return this.balancer.pick(this.members, now, exclude);
  }
}
