import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Route label used once `maxRouteLabels` distinct routes have been seen. */
export const OTHER_ROUTE = 'other';
/** Route label of requests that matched no route (404, 400…). */
export const NO_ROUTE = 'none';

/** Commands of protocol.md counted under their own name; anything else is counted as `unknown`. */
const CONTROL_COMMANDS = new Set([
  'heartbeat',
  'list_domains',
  'publish_web',
  'unpublish_web',
  'add_to_cluster',
  'remove_from_cluster',
  'prepare_domain',
  'claim_domain',
  'release_domain',
  'make_domain_global',
  'make_domain_private',
]);

/** How a control command ended: answered, refused with a reason (ControlError), or failed inside the gateway. */
export type ControlResult = 'ok' | 'refused' | 'error';

/** What the primary's gauges read at scrape time: the control plane's and the routing state's figures. */
export interface StateSources {
  sessions(): number;
  routes(): number;
  certificates(): readonly { name: string; source: string; notAfter: Date }[];
  /** ACME orders that failed since start; the counter exists only when ACME is on. */
  acmeFailures?(): number;
}

/** What a data plane process's gauges read at scrape time. */
export interface PlaneSources {
  /** Members this process currently has ejected (passive health), across every route. */
  membersEjected(): number;
}

/** What the request path records; {@link PlaneMetrics} implements it, tests may pass a fake. */
export interface TrafficMetrics {
  /** One answered (or abandoned) request; `upstreamMs` is the time to the member's response headers. */
  request(route: string | undefined, status: number, upstreamMs: number | undefined): void;
  /** Where open and refused client connections are counted (TCP, before any TLS): read at scrape time. */
  countConnections(counts: ConnectionCounts): void;
  /** One TLS handshake ended: completed, or failed (bad ClientHello, no shared cipher, timeout, plain HTTP). */
  handshake(ok: boolean): void;
}

/** Client connections by listener, as the gateway's connection limiter counts them. */
export interface ConnectionCounts {
  openOn(listener: 'http' | 'https'): number;
  refusedOn(listener: 'http' | 'https'): number;
}

const LISTENERS = ['http', 'https'] as const;

/** Requests and 5xx answers of one route label since start, for the status page and the dashboard. */
export interface RouteTotals {
  requests: number;
  errors: number;
}

/**
 * The traffic metrics of one data plane process (the only process with --workers 1, each worker
 * otherwise), in a registry of their own that the primary merges with the others. Label values are
 * bounded: at most `maxRouteLabels` route names, then `other`. Hot-path methods do a map lookup and
 * an increment; gauges are read from their sources at scrape time.
 */
export class PlaneMetrics implements TrafficMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'status_class' | 'route'>;
  readonly #upstreamSeconds: Histogram<'route'>;
  readonly #handshakes: Counter<'result'>;
  #connectionCounts: ConnectionCounts | undefined;
  readonly #totals = new Map<string, RouteTotals>();
  readonly #maxRouteLabels: number;

  constructor(sources: PlaneSources, options: { maxRouteLabels?: number } = {}) {
    this.#maxRouteLabels = options.maxRouteLabels ?? 200;
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'tfgate_http_requests_total', help: 'Requests answered, by status class and route', labelNames: ['status_class', 'route'], registers });
    this.#upstreamSeconds = new Histogram({
      name: 'tfgate_upstream_response_seconds',
      help: 'Time from forwarding a request to the member to its response headers',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    const connections = (): ConnectionCounts | undefined => this.#connectionCounts;
    // Both listeners are always listed, so a dashboard sees 0 rather than nothing.
    new Gauge({
      name: 'tfgate_active_connections',
      help: 'Open client connections, by listener',
      labelNames: ['listener'],
      registers,
      collect() {
        for (const listener of LISTENERS) this.set({ listener }, connections()?.openOn(listener) ?? 0);
      },
    });
    new Counter({
      name: 'tfgate_connections_refused_total',
      help: 'Client connections refused by the connection limits (--max-connections, --max-connections-per-client), by listener',
      labelNames: ['listener'],
      registers,
      collect() {
        this.reset();
        for (const listener of LISTENERS) this.inc({ listener }, connections()?.refusedOn(listener) ?? 0);
      },
    });
    this.#handshakes = new Counter({ name: 'tfgate_tls_handshakes_total', help: 'TLS handshakes, by result (ok, failed)', labelNames: ['result'], registers });
    new Gauge({
      name: 'tfgate_members_ejected',
      help: 'Members currently taken out of balancing after a failure',
      // Each worker judges members on its own; across workers the largest count is the honest one.
      aggregator: 'max',
      registers,
      collect() {
        this.set(sources.membersEjected());
      },
    });
  }

  /** One answered request. Hot path. */
  request(route: string | undefined, status: number, upstreamMs: number | undefined): void {
    const label = this.#routeLabel(route);
    this.#requests.inc({ status_class: statusClass(status), route: label });
    if (upstreamMs !== undefined) this.#upstreamSeconds.observe({ route: label }, upstreamMs / 1000);
    const totals = this.#totals.get(label);
    if (totals !== undefined) {
      totals.requests++;
      if (status >= 500) totals.errors++;
    }
  }

  /** Reads open and refused connections from `counts` at each scrape. */
  countConnections(counts: ConnectionCounts): void {
    this.#connectionCounts = counts;
  }

  /** One TLS handshake ended. */
  handshake(ok: boolean): void {
    this.#handshakes.inc({ result: ok ? 'ok' : 'failed' });
  }

  /** Requests and 5xx answers per route label since start (plain copies). */
  routeTotals(): Record<string, RouteTotals> {
    // No prototype: a route named `__proto__` is a key like any other, not the record's prototype.
    const out = Object.create(null) as Record<string, RouteTotals>;
    for (const [label, totals] of this.#totals) out[label] = { ...totals };
    return out;
  }

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  #routeLabel(route: string | undefined): string {
    if (route === undefined) return this.#label(NO_ROUTE);
    if (this.#totals.has(route)) return route;
    if (this.#totals.size >= this.#maxRouteLabels) return this.#label(OTHER_ROUTE);
    return this.#label(route);
  }

  #label(label: string): string {
    if (!this.#totals.has(label)) this.#totals.set(label, { requests: 0, errors: 0 });
    return label;
  }
}

/**
 * The primary's metrics: control sessions and commands, routes, certificate expiry and ACME failures,
 * read from their sources at scrape time (the control command counter is the one it updates).
 * /metrics is this registry merged with every data plane process's {@link PlaneMetrics}.
 */
export class StateMetrics {
  readonly registry = new Registry();
  readonly #control: Counter<'command' | 'result'>;

  constructor(sources: StateSources) {
    const registers = [this.registry];
    this.#control = new Counter({ name: 'tfgate_control_messages_total', help: 'Control messages, by command and result (ok, refused, error)', labelNames: ['command', 'result'], registers });
    new Gauge({
      name: 'tfgate_sessions',
      help: 'Control sessions held (connected or within their grace window)',
      registers,
      collect() {
        this.set(sources.sessions());
      },
    });
    new Gauge({
      name: 'tfgate_routes',
      help: 'Routes in the route table',
      registers,
      collect() {
        this.set(sources.routes());
      },
    });
    new Gauge({
      name: 'tfgate_certificate_expiry_timestamp_seconds',
      help: 'When each served certificate expires (unix time), by name and source',
      labelNames: ['name', 'source'],
      registers,
      collect() {
        this.reset();
        let count = 0;
        for (const certificate of sources.certificates()) {
          if (++count > 500) break; // bounded, like every label set here
          this.set({ name: certificate.name, source: certificate.source }, Math.floor(certificate.notAfter.getTime() / 1000));
        }
      },
    });
    const acmeFailures = sources.acmeFailures?.bind(sources);
    if (acmeFailures) {
      new Counter({
        name: 'tfgate_acme_failures_total',
        help: 'ACME orders that failed (directory unreachable, refused, invalid answers, challenge failed)',
        registers,
        collect() {
          this.reset();
          this.inc(acmeFailures());
        },
      });
    }
  }

  /** One control command handled (ControlPlaneOptions `onCommand`). */
  controlMessage(command: string, result: ControlResult): void {
    this.#control.inc({ command: CONTROL_COMMANDS.has(command) ? command : 'unknown', result });
  }

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * One registry from several processes' `getMetricsAsJSON()`: counters, histograms and most gauges add
 * up; gauges declared with `aggregator: 'max'` take the largest value.
 */
export function aggregateMetrics(registries: readonly unknown[][]): Registry {
  return AggregatorRegistry.aggregate(registries as Parameters<typeof AggregatorRegistry.aggregate>[0]);
}

function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}
