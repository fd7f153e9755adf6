import type { ListenAddress } from '../config.js';
import type { RoutingState } from '../vhost/index.js';
import type { PlaneReport } from './plane-report.js';

/**
 * Where the data plane runs: in this process ({@link LocalPlane}) or in worker processes
 * ({@link WorkerPool}). The primary talks to either through this, with plain data only.
 */
export interface PlaneHost {
  /** Binds the listeners (after the first state was applied); resolves with the bound ports. */
  start(http: ListenAddress, https: ListenAddress): Promise<{ http: number; https: number }>;
  /** Installs a routing state; resolves once it is live everywhere. */
  apply(state: RoutingState): void | Promise<void>;
  /** ACME HTTP-01 answers, token → key authorisation; resolves once every process answers them. */
  setChallenges(challenges: Record<string, string>): void | Promise<void>;
  /** TLS session ticket keys, the same in every process. */
  setTicketKeys(keys: Buffer): void;
  /** Traffic counters, merged over processes. */
  report(): Promise<PlaneReport>;
  /** prom-client JSON of each process's metrics registry. */
  metrics(): Promise<unknown[][]>;
  /** Drains (bounded) and stops. Idempotent. */
  close(drainTimeoutMs: number): Promise<void>;
}
