import { Cluster, UpstreamRegistry, createBalancer } from '../upstreams/index.js';
import type { BalancerName, EjectionPolicy, Upstream } from '../upstreams/index.js';
import { CertStore, SecureContextCache, parseCertificateBundle } from '../sni/index.js';
import type { StoredCertificate } from '../sni/index.js';
import { RouteTableRef, compileRoutes } from '../vhost/index.js';
import type { CertificateSpec, RouteSpec, RoutingState } from '../vhost/index.js';
import type { Route } from './route.js';

/**
 * One process's view of the routing state: compiles each new {@link RoutingState} into a route
 * table and swaps it in. Members keep their live counters across versions (the registry), clusters
 * whose spec did not change are reused whole (their balancer cursor too), and members no longer
 * used are handed to `onMembersDropped` so their connection pools can be closed. Certificates in
 * the state become a {@link CertStore}, rebuilt only when they changed, with TLS contexts cached.
 */
export class DataPlane {
  readonly routes = new RouteTableRef<Route>();
  readonly registry: UpstreamRegistry;
  readonly #balancer: BalancerName;
  readonly #onMembersDropped: (dropped: Upstream[]) => void;
  #clusters = new Map<string, { spec: RouteSpec; route: Route }>();
  readonly #contexts: SecureContextCache;
  #certificateSpecs: RoutingState['certificates'];
  #parsed = new Map<CertificateSpec, StoredCertificate>();
  #certStore: CertStore | undefined;

  constructor(options: {
    balancer: BalancerName;
    ejection?: EjectionPolicy;
    /** Each member's in-flight cap (circuit breaker); unlimited by default. */
    maxInFlightPerMember?: number;
    onMembersDropped?: (dropped: Upstream[]) => void;
    /** TLS session ticket keys shared with the other worker processes. */
    ticketKeys?: Buffer;
  }) {
    this.#contexts = new SecureContextCache(undefined, options.ticketKeys);
    this.registry = new UpstreamRegistry(options.ejection, options.maxInFlightPerMember);
    this.#balancer = options.balancer;
    this.#onMembersDropped = options.onMembersDropped ?? (() => {});
  }

  /** The version of the routing state in force. */
  get version(): number {
    return this.routes.current.version;
  }

  /** Rotates the TLS session ticket keys (every worker gets the same from the primary). */
  setTicketKeys(keys: Buffer): void {
    this.#contexts.setTicketKeys(keys);
  }

  /** The certificate store in force; undefined until the state carries a default certificate. */
  get certificates(): CertStore | undefined {
    return this.#certStore;
  }

  /**
   * Compiles and installs `state`; an older version than the one in force is ignored. Throws (and
   * changes nothing) when a certificate in it cannot be parsed: the writer validates them first.
   */
  apply(state: RoutingState): void {
    if (state.version < this.routes.current.version) return;
    if (state.certificates !== this.#certificateSpecs) this.#installCertificates(state.certificates);
    const next = new Map<string, { spec: RouteSpec; route: Route }>();
    const table = compileRoutes(state, (spec) => {
      const known = this.#clusters.get(spec.fqdn);
      const route = known && sameSpec(known.spec, spec) ? known.route : this.#build(spec);
      next.set(spec.fqdn, { spec, route });
      return route;
    });
    this.#clusters = next;
    this.routes.swap(table);
    const inUse = new Set<Upstream>();
    for (const { route } of next.values()) for (const member of route.cluster.members) inUse.add(member);
    const dropped = this.registry.sweep(inUse);
    if (dropped.length > 0) this.#onMembersDropped(dropped);
  }

  #installCertificates(specs: RoutingState['certificates']): void {
    const parsed = new Map<CertificateSpec, StoredCertificate>();
    let fallback: StoredCertificate | undefined;
    for (const spec of Object.values(specs ?? {})) {
      const stored =
        this.#parsed.get(spec) ??
        Object.freeze({ bundle: parseCertificateBundle(spec.certPem + spec.keyPem), source: spec.source, origin: spec.origin, servedFor: spec.servedFor });
      parsed.set(spec, stored);
      if (spec.source === 'default') fallback = stored;
    }
    this.#certStore = fallback ? new CertStore(fallback, [...parsed.values()].filter((c) => c !== fallback), this.#contexts) : undefined;
    this.#parsed = parsed;
    this.#certificateSpecs = specs;
  }

  #build(spec: RouteSpec): Route {
    const members = spec.members.map((address) => this.registry.get(address));
    const cluster = new Cluster(spec.cluster, members, createBalancer(this.#balancer));
    return Object.freeze({ fqdn: spec.fqdn, cluster, rewrite: spec.rewrite });
  }
}

function sameSpec(a: RouteSpec, b: RouteSpec): boolean {
  if (a === b) return true;
  if (a.cluster !== b.cluster || a.rewrite !== b.rewrite || a.members.length !== b.members.length) return false;
  return a.members.every((member, i) => member === b.members[i]);
}
