/**
 * The plain, serialisable routing state: what the control plane (and the operator's files) say is
 * published and which certificates serve it. It crosses the IPC boundary to worker processes as it
 * is; each data plane compiles it into its own route table and certificate store. Every object in it
 * is frozen once built, and parts that did not change keep their identity from one version to the next.
 */
export interface RoutingState {
  /** Increases by one with every change; a data plane reports the version it has applied. */
  readonly version: number;
  /** fqdn (normalised, possibly `*.parent`) → what serves it. */
  readonly routes: Readonly<Record<string, RouteSpec>>;
  /** Certificates by key (`default`, `operator:<file>`, `session:<fqdn>`, `acme:<fqdn>`); absent when HTTPS is off. */
  readonly certificates?: Readonly<Record<string, CertificateSpec>>;
  /**
   * What changed since version `base`: a data plane that runs `base` applies these instead of the
   * whole table, so a publish costs the same with ten routes or a hundred thousand.
   */
  readonly changes?: RoutingChanges;
}

/** The routes set and removed between two versions (disjoint). */
export interface RoutingChanges {
  readonly base: number;
  readonly upserts: readonly RouteSpec[];
  readonly removals: readonly string[];
}

/** One published fqdn and the cluster behind it. */
export interface RouteSpec {
  /** Normalised fqdn, exact (`www.example.com`) or one-label wildcard (`*.apps.example.com`). */
  readonly fqdn: string;
  /** Stable id of the cluster (a session's publish uuid in hex, or `static:<fqdn>`). */
  readonly cluster: string;
  /** Members as `host:port`, host normalised (IPv6 bracketed). */
  readonly members: readonly string[];
  /** Host header sent upstream instead of the client's, or null to keep it. */
  readonly rewrite: string | null;
  /** Who published it: the operator's routes file or a control session. */
  readonly source: 'static' | 'session';
}

/** A certificate as plain data: validated by whoever put it in the state. */
export interface CertificateSpec {
  readonly source: 'session' | 'operator' | 'acme' | 'default';
  /** Leaf first, then the chain, PEM. */
  readonly certPem: string;
  readonly keyPem: string;
  /** The file it came from, or the fqdn it was published or ordered for. */
  readonly origin: string;
  /** Names it is served for (empty for the default certificate, which serves every other name). */
  readonly servedFor: readonly string[];
}
