import { SERVE_FLAGS } from '../config.js';
import type { Config, ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import { HealthChecker } from '../upstreams/index.js';
import type { RoutingState } from '../vhost/index.js';
import { openFileLimit, planeConnectionCaps } from './connection-caps.js';
import { DataPlane } from './data-plane.js';
import { Gateway } from './gateway.js';
import { PlaneMetrics } from './metrics.js';
import { reportOf } from './plane-report.js';
import type { PlaneReport } from './plane-report.js';
import type { PlaneHost } from './plane-host.js';

/** The part of the config a data plane process runs on (plain data: it crosses IPC to workers). */
export type PlaneConfig = Pick<Config, 'limits' | 'balancer' | 'accessLog' | 'redirectHttp' | 'healthCheck' | 'logLevel' | 'workers'>;

/**
 * One process's data plane, whole: the route table and certificates compiled from the routing state,
 * the HTTP/HTTPS listeners, member pools, active health checks and this process's traffic metrics.
 * Runs in the only process (`--workers 1`) or in each worker process; fed plain data only.
 */
export class LocalPlane implements PlaneHost {
  readonly dataPlane: DataPlane;
  readonly gateway: Gateway;
  /** Traffic metrics of this process (requests, connections, handshakes). */
  readonly trafficMetrics: PlaneMetrics;
  readonly #health: HealthChecker | undefined;
  #challenges: Readonly<Record<string, string>> = {};

  constructor(config: PlaneConfig, log: Logger, ticketKeys?: Buffer) {
    let gateway: Gateway | undefined;
    this.dataPlane = new DataPlane({
      balancer: config.balancer,
      maxInFlightPerMember: config.limits.maxInFlightPerMember,
      onMembersDropped: (dropped) => gateway?.closeMembers(dropped),
      ...(ticketKeys ? { ticketKeys } : {}),
    });
    const dataPlane = this.dataPlane;
    // Sessions, routes and certificates are the primary's to count (StateMetrics); this process counts its traffic.
    this.trafficMetrics = new PlaneMetrics({
      membersEjected: () => {
        const now = Date.now();
        let ejected = 0;
        for (const member of dataPlane.registry.all()) if (!member.isAvailable(now)) ejected++;
        return ejected;
      },
    });
    const healthLog = log.child({ component: 'health' });
    this.#health = config.healthCheck
      ? new HealthChecker({
          ...config.healthCheck,
          // Read each round, so members added or dropped by a publish are checked or forgotten.
          members: () => dataPlane.registry.all(),
          onChange: (member, healthy, reason) =>
            healthy
              ? healthLog.info({ member: member.address, reason }, 'member passed its health check, back in')
              : healthLog.warn({ member: member.address, reason }, 'member failed its health checks, taken out'),
        })
      : undefined;
    const caps = planeConnectionCaps(config.limits, config.workers, openFileLimit());
    if (caps.openFileLimit !== undefined) {
      // Lowering the default is routine on a machine with a modest `ulimit -n`; lowering what the operator asked for is news.
      const asked = config.limits.maxConnections !== Number(SERVE_FLAGS['max-connections'].default);
      log[asked ? 'warn' : 'info'](
        {
          openFileLimit: caps.openFileLimit,
          maxConnections: caps.maxConnections,
          workers: config.workers,
          hint: 'a forwarded connection holds two open files (client and member); raise ulimit -n or lower --max-connections',
        },
        'connection cap lowered to what the open-file limit allows',
      );
    }
    gateway = new Gateway({
      limits: { ...config.limits, maxConnections: caps.maxConnections, maxConnectionsPerClient: caps.maxConnectionsPerClient },
      routes: dataPlane.routes,
      log,
      accessLog: config.accessLog,
      metrics: this.trafficMetrics,
      certificates: () => dataPlane.certificates,
      redirectHttp: config.redirectHttp,
      acmeChallenge: (token) => (Object.hasOwn(this.#challenges, token) ? this.#challenges[token] : undefined),
    });
    this.gateway = gateway;
  }

  /** Installs a routing state (synchronous: live when this returns). */
  apply(state: RoutingState): void {
    this.dataPlane.apply(state);
  }

  /** The ACME HTTP-01 answers to give, token → key authorisation. */
  setChallenges(challenges: Readonly<Record<string, string>>): void {
    this.#challenges = challenges;
  }

  /** New TLS session ticket keys (shared by every worker, rotated by the primary). */
  setTicketKeys(keys: Buffer): void {
    this.dataPlane.setTicketKeys(keys);
  }

  /** Binds HTTPS then HTTP (so redirects know the HTTPS port) and starts health checks. */
  async start(http: ListenAddress, https: ListenAddress): Promise<{ http: number; https: number }> {
    const httpsPort = await this.gateway.listenHttps(https);
    const httpPort = await this.gateway.listenHttp(http);
    this.#health?.start();
    return { http: httpPort, https: httpsPort };
  }

  /** This process's traffic counters, as plain data. */
  localReport(): PlaneReport {
    return reportOf(this.dataPlane, this.gateway.inFlight, this.trafficMetrics.routeTotals());
  }

  async report(): Promise<PlaneReport> {
    return this.localReport();
  }

  async metrics(): Promise<unknown[][]> {
    return [await this.trafficMetrics.registry.getMetricsAsJSON()];
  }

  /** Stops health checks, then drains the listeners (bounded). Idempotent. */
  async close(drainTimeoutMs: number): Promise<void> {
    this.#health?.close();
    await this.gateway.close(drainTimeoutMs);
  }
}
