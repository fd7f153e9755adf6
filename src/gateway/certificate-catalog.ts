import { parseCertificateBundle } from '../sni/index.js';
import type { CertificateSpec, RoutingState } from '../vhost/index.js';

/** A certificate as /status and the expiry gauges list it. */
export interface CertificateSummary {
  readonly names: readonly string[];
  readonly source: CertificateSpec['source'];
  readonly origin: string;
  readonly notAfter: Date;
}

type Leaf = Pick<CertificateSummary, 'names' | 'notAfter'>;

/**
 * The certificates of a routing state, listed for the primary's /status and gauges without
 * compiling the state into a data plane (that is the workers' job): each PEM is parsed once, and
 * a certificate set is listed once per change (the state keeps its identity while unchanged).
 */
export class CertificateCatalog {
  #specs: RoutingState['certificates'] | null = null;
  #list: readonly CertificateSummary[] = [];
  /** Parsed leaves by PEM, kept from one certificate set to the next. */
  #leaves = new Map<string, Leaf>();

  list(specs: RoutingState['certificates']): readonly CertificateSummary[] {
    if (specs === this.#specs) return this.#list;
    const leaves = new Map<string, Leaf>();
    const list: CertificateSummary[] = [];
    for (const spec of Object.values(specs ?? {})) {
      let leaf = this.#leaves.get(spec.certPem) ?? leaves.get(spec.certPem);
      if (leaf === undefined) {
        const bundle = parseCertificateBundle(spec.certPem + spec.keyPem);
        leaf = { names: bundle.names, notAfter: bundle.notAfter };
      }
      leaves.set(spec.certPem, leaf);
      list.push(Object.freeze({ names: leaf.names, source: spec.source, origin: spec.origin, notAfter: leaf.notAfter }));
    }
    this.#specs = specs;
    this.#leaves = leaves;
    this.#list = Object.freeze(list);
    return this.#list;
  }
}
