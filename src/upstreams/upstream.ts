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
  #consecutiveFailures = 0;
  #ejectedUntil = 0;
  readonly #policy: EjectionPolicy;

  constructor(address: MemberAddress, policy: EjectionPolicy = DEFAULT_EJECTION) {
    this.host = address.host;
    this.port = address.port;
    this.address = address.address;
    this.#policy = policy;
  }

  /** False while the member is ejected after a failure. */
  isAvailable(now: number): boolean {
    return now >= this.#ejectedUntil;
  }

  /** Time (ms since epoch) until which the member is ejected; 0 if it never was. */
  get ejectedUntil(): number {
    return this.#ejectedUntil;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }

  /** The member refused or timed out a connection: eject it for the next back-off period. */
  recordFailure(now: number): void {
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
