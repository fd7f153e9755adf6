import { request } from 'node:http';
import type { ClientRequest } from 'node:http';
import type { Upstream } from './upstream.js';

/** How members are checked, and who hears about a verdict change. */
export interface HealthCheckOptions {
  /** Path requested with GET on each member; a 2xx or 3xx answer passes. */
  readonly path: string;
  readonly intervalMs: number;
  /** Bound on one check (connect, headers); past it the check fails. */
  readonly timeoutMs: number;
  /**
   * Every member to check, read at each round: the registry, so members added by a republish are
   * checked from the next round on and dropped ones are no longer checked.
   */
  readonly members: () => Iterable<Upstream>;
  /** Consecutive failed checks before a member is taken out (default 2). */
  readonly unhealthyThreshold?: number;
  /** Consecutive passed checks before it comes back (default 1). */
  readonly healthyThreshold?: number;
  readonly onChange?: (member: Upstream, healthy: boolean, reason: string) => void;
}

interface Probe {
  fails: number;
  passes: number;
  inFlight: ClientRequest | undefined;
}

/**
 * Active health checks: every interval, one GET of `path` per member (never two at once for the same
 * member). A member failing `unhealthyThreshold` checks in a row is marked unhealthy, which takes it
 * out of balancing alongside passive ejection (see {@link Upstream.canTake}); it comes back after
 * `healthyThreshold` passes. Members start healthy, so a publish is served at once. Timers are unref'd.
 */
export class HealthChecker {
  readonly #o: HealthCheckOptions;
  /** Per-member check state; a WeakMap so dropped members are forgotten with their object. */
  readonly #probes = new WeakMap<Upstream, Probe>();
  readonly #running = new Set<ClientRequest>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: HealthCheckOptions) {
    this.#o = options;
  }

  /** Runs a first round at once, then one every interval. */
  start(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.round(), this.#o.intervalMs);
    this.#timer.unref();
    this.round();
  }

  /** Checks every member not already being checked (also callable by tests and after a publish). */
  round(): void {
    if (this.#closed) return;
    for (const member of this.#o.members()) {
      let probe = this.#probes.get(member);
      if (probe === undefined) {
        probe = { fails: 0, passes: 0, inFlight: undefined };
        this.#probes.set(member, probe);
      }
      if (probe.inFlight === undefined) this.#check(member, probe);
    }
  }

  /** Stops the timer and aborts checks under way; idempotent. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const req of this.#running) req.destroy();
    this.#running.clear();
  }

  #check(member: Upstream, probe: Probe): void {
    let settled = false;
    const req = request({
      host: member.host.startsWith('[') ? member.host.slice(1, -1) : member.host,
      port: member.port,
      path: this.#o.path,
      method: 'GET',
      agent: false,
      headers: { host: member.address, 'user-agent': 'tfgate-health-check', connection: 'close' },
    });
    const done = (passed: boolean, reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.#running.delete(req);
      probe.inFlight = undefined;
      req.destroy();
      if (!this.#closed) this.#verdict(member, probe, passed, reason);
    };
    const timer = setTimeout(() => done(false, `no answer within ${this.#o.timeoutMs} ms`), this.#o.timeoutMs);
    timer.unref();
    probe.inFlight = req;
    this.#running.add(req);
    req.on('error', (err: Error) => done(false, err.message));
    req.on('response', (res) => {
      res.on('error', () => {});
      res.resume();
      const status = res.statusCode ?? 0;
      done(status >= 200 && status < 400, `status ${status}`);
    });
    req.end();
  }

  #verdict(member: Upstream, probe: Probe, passed: boolean, reason: string): void {
    if (passed) {
      probe.fails = 0;
      probe.passes++;
      if (!member.healthy && probe.passes >= (this.#o.healthyThreshold ?? 1)) {
        member.setHealthy(true);
        this.#o.onChange?.(member, true, reason);
      }
      return;
    }
    probe.passes = 0;
    probe.fails++;
    if (member.healthy && probe.fails >= (this.#o.unhealthyThreshold ?? 2)) {
      member.setHealthy(false);
      this.#o.onChange?.(member, false, reason);
    }
  }
}
