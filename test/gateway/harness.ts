import { onTestFinished } from 'vitest';
import type { Limits } from '../../src/config.js';
import { DataPlane, Gateway } from '../../src/gateway/index.js';
import type { TrafficMetrics } from '../../src/gateway/index.js';
import type { RoutingState } from '../../src/vhost/index.js';
import { collectingLogger } from '../helpers/logs.js';

/** Limits small enough for tests to hit them quickly. */
export const TEST_LIMITS: Limits = Object.freeze({
  maxHeaderBytes: 8_192,
  maxHeaderCount: 50,
  headersTimeoutMs: 2_000,
  idleTimeoutMs: 5_000,
  upstreamConnectTimeoutMs: 1_000,
  upstreamResponseTimeoutMs: 2_000,
  upstreamMaxConnections: 16,
  controlMaxFrameBytes: 1 << 20,
  controlMessagesPerSecond: 100,
  maxSessionsPerAccount: 64,
  maxClustersPerSession: 1_000,
  maxPendingDomainsPerAccount: 100,
  maxConnections: 1_000,
  maxConnectionsPerClient: 1_000,
  maxBodyBytes: 0,
  retryBudgetPercent: 20,
  maxInFlightPerMember: 1_000,
  tunnelIdleTimeoutMs: 3_600_000,
});

/** A route for {@link startGateway}: members as `host:port`, optional Host rewrite. */
export interface TestRoute {
  readonly members: readonly string[];
  readonly rewrite?: string | null;
}

/** A gateway in this process on 127.0.0.1:0, with its data plane and its parsed log lines. */
export interface TestGateway {
  readonly port: number;
  readonly gateway: Gateway;
  readonly dataPlane: DataPlane;
  /** Every log record so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Publishes a new set of routes (next version). */
  publish(routes: Record<string, TestRoute>): void;
}

/** Starts a gateway routing `routes`; closed when the test finishes. */
export async function startGateway(
  routes: Record<string, TestRoute>,
  options: { limits?: Partial<Limits>; accessLog?: boolean; now?: () => number; metrics?: TrafficMetrics } = {},
): Promise<TestGateway> {
  const { log, logs } = collectingLogger();
  let gateway: Gateway | undefined;
  const limits = { ...TEST_LIMITS, ...options.limits };
  const dataPlane = new DataPlane({
    balancer: 'least-outstanding',
    maxInFlightPerMember: limits.maxInFlightPerMember,
    onMembersDropped: (dropped) => gateway?.closeMembers(dropped),
  });
  gateway = new Gateway({
    limits,
    routes: dataPlane.routes,
    log,
    accessLog: options.accessLog ?? true,
    ...(options.now ? { now: options.now } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  let version = 0;
  const publish = (next: Record<string, TestRoute>): void => {
    const state: RoutingState = {
      version: ++version,
      routes: Object.fromEntries(
        Object.entries(next).map(([fqdn, route]) => [
          fqdn,
          { fqdn, cluster: `test:${fqdn}`, members: [...route.members], rewrite: route.rewrite ?? null, source: 'static' as const },
        ]),
      ),
    };
    dataPlane.apply(state);
  };
  publish(routes);
  const port = await gateway.listenHttp({ host: '127.0.0.1', port: 0 });
  const started = gateway;
  onTestFinished(() => started.close(500));
  return { port, gateway: started, dataPlane, logs, publish };
}

/** The member object behind `address` in the route for `fqdn`. */
export function memberOf(gw: TestGateway, fqdn: string, address: string) {
  const member = gw.dataPlane.routes.current.lookup(fqdn)?.cluster.members.find((m) => m.address === address);
  if (!member) throw new Error(`no member ${address} for ${fqdn}`);
  return member;
}

/** Resolves once `predicate` holds, checking on each tick; rejects after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 3_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
