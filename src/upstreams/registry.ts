import { parseMemberAddress } from './address.js';
import { DEFAULT_EJECTION, Upstream } from './upstream.js';
import type { EjectionPolicy } from './upstream.js';

/**
 * Hands out one {@link Upstream} per member address so live counters survive republishes, and
 * forgets members no route uses any more (their connection pools are closed by whoever listens).
 * Each route that uses a member holds one reference to it ({@link acquire} / {@link release}).
 */
export class UpstreamRegistry {
  readonly #byAddress = new Map<string, Upstream>();
  /** How many routes use each member: changes cost what they touch, not the size of the table. */
  readonly #uses = new Map<Upstream, number>();
  readonly #policy: EjectionPolicy;
  readonly #maxInFlight: number;

  /** `maxInFlight` is each member's in-flight cap (infinite by default). */
  constructor(policy: EjectionPolicy = DEFAULT_EJECTION, maxInFlight = Number.POSITIVE_INFINITY) {
    this.#policy = policy;
    this.#maxInFlight = maxInFlight;
  }

  /** The member for `host:port` if some route uses it, without taking a reference. */
  peek(address: string): Upstream | undefined {
    return this.#byAddress.get(address);
  }

  /**
   * The member for `host:port`, counted as used once more (one route referencing it); throws on an
   * invalid address (routing state is validated before it gets here).
   */
  acquire(address: string): Upstream {
    let upstream = this.#byAddress.get(address);
    if (!upstream) {
      const parsed = parseMemberAddress(address);
      if (!parsed.ok) throw new Error(parsed.reason);
      upstream = this.#byAddress.get(parsed.value.address);
      if (!upstream) {
        upstream = new Upstream(parsed.value, this.#policy, this.#maxInFlight);
        this.#byAddress.set(parsed.value.address, upstream);
      }
    }
    this.#uses.set(upstream, (this.#uses.get(upstream) ?? 0) + 1);
    return upstream;
  }

  /** One route less uses `upstream`; true when it was the last one (the member is forgotten). */
  release(upstream: Upstream): boolean {
    const uses = (this.#uses.get(upstream) ?? 0) - 1;
    if (uses > 0) {
      this.#uses.set(upstream, uses);
      return false;
    }
    this.#uses.delete(upstream);
    this.#byAddress.delete(upstream.address);
    return true;
  }

  /** Every member currently known. */
  all(): IterableIterator<Upstream> {
    return this.#byAddress.values();
  }
}
