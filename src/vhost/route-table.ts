import { wildcardParent } from '../hostname.js';

/**
 * A frozen route table: exact names first, then a one-label wildcard (`*.example.com` matches
 * `a.example.com`, not `a.b.example.com` nor `example.com`), as TLS wildcards do.
 * Lookup is two hash probes whatever the number of routes.
 */
export class RouteTable<R> {
  readonly #exact: ReadonlyMap<string, R>;
  /** Keyed by the wildcard's parent: `*.example.com` is stored under `example.com`. */
  readonly #wildcard: ReadonlyMap<string, R>;

  constructor(readonly version: number, entries: Iterable<readonly [fqdn: string, route: R]>) {
    const exact = new Map<string, R>();
    const wildcard = new Map<string, R>();
    for (const [fqdn, route] of entries) {
      const parent = wildcardParent(fqdn);
      if (parent === undefined) exact.set(fqdn, route);
      else wildcard.set(parent, route);
    }
    this.#exact = exact;
    this.#wildcard = wildcard;
    Object.freeze(this);
  }

  /** The route for a normalised hostname, or undefined. Hot path: no allocation. */
  lookup(hostname: string): R | undefined {
    const exact = this.#exact.get(hostname);
    if (exact !== undefined) return exact;
    const dot = hostname.indexOf('.');
    if (dot <= 0) return undefined;
    return this.#wildcard.get(hostname.slice(dot + 1));
  }

  /** Number of routes, exact and wildcard. */
  get size(): number {
    return this.#exact.size + this.#wildcard.size;
  }

  /** Every route with its fqdn, for status pages. */
  *entries(): IterableIterator<[string, R]> {
    yield* this.#exact.entries();
    for (const [parent, route] of this.#wildcard) yield [`*.${parent}`, route];
  }
}
