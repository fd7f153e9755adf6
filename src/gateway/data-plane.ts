import { Cluster, UpstreamRegistry, createBalancer } from '../upstreams/index.js';
import type { Balancer, BalancerName, EjectionPolicy, Upstream } from '../upstreams/index.js';
import { CertStore, SecureContextCache, parseCertificateBundle } from '../sni/index.js';
import type { CertificateBundle, StoredCertificate } from '../sni/index.js';
import { RouteTable, RouteTableRef } from '../vhost/index.js';
import type { CertificateSpec, RouteSpec, RoutingChanges, RoutingState } from '../vhost/index.js';
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
  /** Makes each cluster's balancer (of the configured kind) when it first picks a member. */
  readonly #newBalancer: () => Balancer;
  readonly #onMembersDropped: (dropped: Upstream[]) => void;
  /**
   * The runtime route of each fqdn in force; changed in place by the one writer (apply). The specs
   * themselves are not kept: a route says all a later spec is compared with, and at 100k routes the
   * specs would double this process's memory.
   */
  #clusters = new Map<string, Route>();
  readonly #contexts: SecureContextCache;
  #certificateSpecs: RoutingState['certificates'];
  /** Parsed certificates by their PEM, kept from one certificate set to the next. */
  #bundles = new Map<string, { keyPem: string; bundle: CertificateBundle }>();
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
    const balancer = options.balancer;
    this.#newBalancer = () => createBalancer(balancer);
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
   * Installs `state`: its `changes` when this plane runs their base version (cost proportional to the
   * change), else the whole table. An older version than the one in force is ignored. Throws (and
   * changes nothing) when a certificate in it cannot be parsed: the writer validates them first.
   */
  apply(state: RoutingState): void {
    const current = this.routes.current;
    if (state.version < current.version) return;
    if (state.changes && state.changes.base === current.version && current.version > 0) {
      this.applyChanges(state.version, state.changes, state.certificates);
      return;
    }
    this.applyWhole(state.version, Object.values(state.routes), state.certificates);
  }

  /**
   * Installs the whole table `specs` as `version` (older versions are ignored). Routes whose spec did
   * not change are kept whole; read once, so `specs` may be a stream of them (see decodeRouteSpecs).
   */
  applyWhole(version: number, specs: Iterable<RouteSpec>, certificates: RoutingState['certificates']): void {
    if (version < this.routes.current.version) return;
    if (certificates !== this.#certificateSpecs) this.#installCertificates(certificates);
    // The routes in force are left as they are until the new table is whole (`specs` may throw midway).
    const previous = this.#clusters;
    const next = new Map<string, Route>();
    const released: Upstream[] = [];
    for (const spec of specs) {
      const earlier = next.get(spec.fqdn); // the same fqdn twice: the later spec wins
      const known = earlier ?? previous.get(spec.fqdn);
      if (known && builtFrom(known, spec)) {
        next.set(spec.fqdn, known);
        continue;
      }
      if (earlier && earlier !== previous.get(spec.fqdn)) released.push(...earlier.cluster.members);
      next.set(spec.fqdn, this.#build(spec));
    }
    // Routes replaced or gone give their members back (after the new ones took theirs).
    for (const [fqdn, route] of previous) if (next.get(fqdn) !== route) released.push(...route.cluster.members);
    this.#clusters = next;
    this.routes.swap(new RouteTable(version, next));
    const dropped = released.filter((member) => this.registry.release(member));
    if (dropped.length > 0) this.#onMembersDropped(dropped);
  }

  /**
   * Applies the changes from the version in force to `version`; false (and nothing changed) when this
   * plane does not run `changes.base`, so the caller sends the whole state instead.
   */
  applyChanges(version: number, changes: RoutingChanges, certificates: RoutingState['certificates']): boolean {
    const current = this.routes.current;
    if (changes.base !== current.version) return version <= current.version;
    if (certificates !== this.#certificateSpecs) this.#installCertificates(certificates);
    const dropped = this.#update(changes.upserts, changes.removals);
    const upserted: [string, Route][] = changes.upserts.map((spec) => [spec.fqdn, this.#clusters.get(spec.fqdn)!]);
    this.routes.swap(current.derive(version, upserted, changes.removals));
    if (dropped.length > 0) this.#onMembersDropped(dropped);
    return true;
  }

  /**
   * Brings the runtime clusters in line with `upserts` and `removals`: a cluster whose spec did not
   * change is kept whole, members are counted per route. Returns the members no route uses any more.
   */
  #update(upserts: Iterable<RouteSpec>, removals: Iterable<string>): Upstream[] {
    const released: Upstream[] = [];
    for (const spec of upserts) {
      const known = this.#clusters.get(spec.fqdn);
      if (known && builtFrom(known, spec)) continue;
      this.#clusters.set(spec.fqdn, this.#build(spec));
      if (known) released.push(...known.cluster.members);
    }
    for (const fqdn of removals) {
      const known = this.#clusters.get(fqdn);
      if (!known) continue;
      this.#clusters.delete(fqdn);
      released.push(...known.cluster.members);
    }
    // Released after the new clusters took their references, so a member kept by a republish stays.
    return released.filter((member) => this.registry.release(member));
  }

  #installCertificates(specs: RoutingState['certificates']): void {
    // Keyed by content: specs that crossed IPC are new objects, but unchanged PEM is not parsed again.
    const bundles = new Map<string, { keyPem: string; bundle: CertificateBundle }>();
    const stored: StoredCertificate[] = [];
    let fallback: StoredCertificate | undefined;
    for (const spec of Object.values(specs ?? {})) {
      const known = this.#bundles.get(spec.certPem) ?? bundles.get(spec.certPem);
      const bundle = known?.keyPem === spec.keyPem ? known.bundle : parseCertificateBundle(spec.certPem + spec.keyPem);
      bundles.set(spec.certPem, { keyPem: spec.keyPem, bundle });
      const certificate = Object.freeze({ bundle, source: spec.source, origin: spec.origin, servedFor: spec.servedFor });
      if (spec.source === 'default') fallback = certificate;
      else stored.push(certificate);
    }
    this.#certStore = fallback ? new CertStore(fallback, stored, this.#contexts) : undefined;
    this.#bundles = bundles;
    this.#certificateSpecs = specs;
  }

  #build(spec: RouteSpec): Route {
    const members = spec.members.map((address) => this.registry.acquire(address));
    const cluster = new Cluster(members, this.#newBalancer);
    return Object.freeze({ fqdn: spec.fqdn, cluster, rewrite: spec.rewrite });
  }
}

/**
 * True when `route` is what `spec` compiles to (same rewrite and members in order), so it can be kept
 * whole; a new cluster id with the same members changes nothing here, so the worker keeps no ids.
 */
function builtFrom(route: Route, spec: RouteSpec): boolean {
  const members = route.cluster.members;
  if (route.rewrite !== spec.rewrite || members.length !== spec.members.length) return false;
  return members.every((member, i) => member.address === spec.members[i]);
}
