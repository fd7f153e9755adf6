import type { Balancer } from './balancers.js';
import type { Upstream } from './upstream.js';

/**
 * A published cluster as the data plane runs it: its members, and the balancer that spreads requests
 * over them, made on the first request (most of a large table sees none; at 100,000 routes that is
 * ~2.5 MB per process). Which cluster id it was published as is the routing state's business.
 */
export class Cluster {
  #balancer: Balancer | undefined;

  constructor(
    readonly members: readonly Upstream[],
    readonly newBalancer: () => Balancer,
  ) {
    Object.freeze(this.members);
  }

  /** A member for the next request, or undefined when none is available (all ejected, or no members). */
  pick(now: number, exclude?: Upstream): Upstream | undefined {
    return (this.#balancer ??= this.newBalancer()).pick(this.members, now, exclude);
  }
}
