import type { MemberAddress } from './address.js';

/** How long a failing member stays out: starts at `baseMs`, doubles per consecutive failure, capped at `maxMs`. */
export interface EjectionPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_EJECTION: EjectionPolicy = Object.freeze({ baseMs: 1_000, maxMs: 30_000 });

/**
 * One member (`host:port`) and its live counters. The same object survives republishes (the
 * registry hands it out by address), so in-flight counts and ejections are not reset by a publish.
 * Owned by the data plane of one process: only request code touches the counters.
 */
export class Upstream {
  readonly host: string;
  readonly port: number;
  readonly address: string;
  /** Requests forwarded to this member and not finished yet. */
  inFlight = 0;
  /** Requests ever forwarded (for status pages). */
  requests = 0;
  /** The in-flight cap (circuit breaker): a member at it takes no more requests until one finishes. */
  readonly maxInFlight: number;
  #consecutiveFailures = 0;
  #ejectedUntil = 0;
  #healthy = true;
  readonly #policy: EjectionPolicy;

  constructor(address: MemberAddress, policy: EjectionPolicy = DEFAULT_EJECTION, maxInFlight = Number.POSITIVE_INFINITY) {
    this.host = address.host;
    this.port = address.port;
    this.address = address.address;
    this.#policy = policy;
    this.maxInFlight = maxInFlight;
  }

  /** False while the member is ejected after a failure (passive) or failing its health check (active). */
  isAvailable(now: number): boolean {
    return this.#healthy && now >= this.#ejectedUntil;
  }

  /** Available and under its in-flight cap: what balancers ask. Hot path: two comparisons, no allocation. */
  canTake(now: number): boolean {
    return this.inFlight < this.maxInFlight && this.#healthy && now >= this.#ejectedUntil;
  }

  /** The last active health check's verdict (true until a check says otherwise, and when checks are off). */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** Set by the health checker only: an unhealthy member is out until a check passes again. */
  setHealthy(healthy: boolean): void {
    this.#healthy = healthy;
  }

  /** Time (ms since epoch) until which the member is ejected; 0 if it never was. */
  get ejectedUntil(): number {
    return this.#ejectedUntil;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }

  /**
   * The member refused or timed out a connection: eject it for the next back-off period. Failures
   * while it is already ejected (requests that were queued on it) do not lengthen the back-off.
   */
  recordFailure(now: number): void {
    if (now < this.#ejectedUntil) return;
    this.#consecutiveFailures++;
    const exponent = Math.min(this.#consecutiveFailures - 1, 20);
    const backoff = Math.min(this.#policy.maxMs, this.#policy.baseMs * 2 ** exponent);
    this.#ejectedUntil = now + backoff;
  }

  /** The member answered: the back-off starts again from its base. */
  recordSuccess(): void {
    if (this.#consecutiveFailures !== 0) this.#consecutiveFailures = 0;
  }
}
