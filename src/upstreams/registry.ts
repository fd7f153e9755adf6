import { parseMemberAddress } from './address.js';
import { DEFAULT_EJECTION, Upstream } from './upstream.js';
import type { EjectionPolicy } from './upstream.js';

/**
 * Hands out one {@link Upstream} per member address so live counters survive republishes, and
 * forgets members no route uses any more (their connection pools are closed by whoever listens).
 */
export class UpstreamRegistry {
  readonly #byAddress = new Map<string, Upstream>();
  readonly #policy: EjectionPolicy;
  readonly #maxInFlight: number;

  /** `maxInFlight` is each member's in-flight cap (infinite by default). */
  constructor(policy: EjectionPolicy = DEFAULT_EJECTION, maxInFlight = Number.POSITIVE_INFINITY) {
    this.#policy = policy;
    this.#maxInFlight = maxInFlight;
  }

  /** The member for `host:port`; throws on an invalid address (routing state is validated before it gets here). */
  get(address: string): Upstream {
    const known = this.#byAddress.get(address);
    if (known) return known;
    const parsed = parseMemberAddress(address);
    if (!parsed.ok) throw new Error(parsed.reason);
    const existing = this.#byAddress.get(parsed.value.address);
    if (existing) return existing;
    const upstream = new Upstream(parsed.value, this.#policy, this.#maxInFlight);
    this.#byAddress.set(parsed.value.address, upstream);
    return upstream;
  }

  /** Drops every member not in `inUse` and returns the dropped ones. */
  sweep(inUse: ReadonlySet<Upstream>): Upstream[] {
    const dropped: Upstream[] = [];
    for (const [address, upstream] of this.#byAddress) {
      if (!inUse.has(upstream)) {
        this.#byAddress.delete(address);
        dropped.push(upstream);
      }
    }
    return dropped;
  }

  /** Every member currently known. */
  all(): IterableIterator<Upstream> {
    return this.#byAddress.values();
  }
}
