/**
 * The plain, serialisable routing state: what the control plane (and the operator's routes file)
 * say is published. It crosses the IPC boundary to worker processes as it is; each data plane
 * compiles it into its own {@link RouteTable}. Every object in it is frozen once built.
 */
export interface RoutingState {
  /** Increases by one with every change; a data plane reports the version it has applied. */
  readonly version: number;
  /** fqdn (normalised, possibly `*.parent`) → what serves it. */
  readonly routes: Readonly<Record<string, RouteSpec>>;
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

/** The state before anything is published. */
export const EMPTY_ROUTING_STATE: RoutingState = Object.freeze({ version: 0, routes: Object.freeze({}) });
