import type { Cluster } from '../upstreams/index.js';

/** The data plane's runtime route: what a request for `fqdn` is forwarded to. Frozen. */
export interface Route {
  readonly fqdn: string;
  readonly cluster: Cluster;
  /** Host header sent upstream instead of the client's, or null to keep it. */
  readonly rewrite: string | null;
}
