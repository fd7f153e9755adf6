/**
 * Bounds retries to a fraction of traffic: each request earns `ratio` of a retry, each retry spends
 * one, and at most `burst` can be saved up. Over any stretch of time, retries ≤ burst + ratio × requests,
 * so a failing cluster cannot multiply the load on the others. One per data plane; hot path: no allocation.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly burst: number;
  #tokens: number;
  /** Retries allowed so far. */
  retries = 0;
  /** Retries refused because the budget was spent. */
  denied = 0;

  /** `ratio` in [0, 1] (0 = never retry); `burst` the retries that may be saved up (also the starting balance). */
  constructor(ratio: number, burst = 10) {
    this.ratio = Math.max(0, Math.min(1, ratio));
    this.burst = this.ratio === 0 ? 0 : Math.max(1, burst);
    this.#tokens = this.burst;
  }

  /** A client request started. */
  request(): void {
    const tokens = this.#tokens + this.ratio;
    this.#tokens = tokens > this.burst ? this.burst : tokens;
  }

  /** True (and the retry is spent) when one more retry fits the budget. */
  tryRetry(): boolean {
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      this.retries++;
      return true;
    }
    this.denied++;
    return false;
  }
}
