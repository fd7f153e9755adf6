import { wildcardParent } from '../hostname.js';
import { LayeredMap } from './layered-map.js';

/**
 * A frozen route table: exact names first, then a one-label wildcard (`*.example.com` matches
 * `a.example.com`, not `a.b.example.com` nor `example.com`), as TLS wildcards do.
 * Lookup is a few hash probes whatever the number of routes; a derived table costs the change,
 * not the size of the table (see {@link LayeredMap}).
 */
export class RouteTable<R> {
  readonly #exact: LayeredMap<string, R>;
  /** Keyed by the wildcard's parent: `*.example.com` is stored under `example.com`. */
  readonly #wildcard: LayeredMap<string, R>;

  constructor(readonly version: number, entries: Iterable<readonly [fqdn: string, route: R]>, maps?: { exact: LayeredMap<string, R>; wildcard: LayeredMap<string, R> }) {
    if (maps) {
      this.#exact = maps.exact;
      this.#wildcard = maps.wildcard;
    } else {
      const exact: [string, R][] = [];
      const wildcard: [string, R][] = [];
      for (const [fqdn, route] of entries) {
        const parent = wildcardParent(fqdn);
        if (parent === undefined) exact.push([fqdn, route]);
        else wildcard.push([parent, route]);
      }
      this.#exact = LayeredMap.of(exact);
      this.#wildcard = LayeredMap.of(wildcard);
    }
    Object.freeze(this);
  }

  /** A new table: this one with `upserts` set and `removals` gone. */
  derive(version: number, upserts: Iterable<readonly [fqdn: string, route: R]>, removals: Iterable<string>): RouteTable<R> {
    const exactSets: [string, R][] = [];
    const wildcardSets: [string, R][] = [];
    const exactDeletes: string[] = [];
    const wildcardDeletes: string[] = [];
    for (const fqdn of removals) {
      const parent = wildcardParent(fqdn);
      if (parent === undefined) exactDeletes.push(fqdn);
      else wildcardDeletes.push(parent);
    }
    for (const [fqdn, route] of upserts) {
      const parent = wildcardParent(fqdn);
      if (parent === undefined) exactSets.push([fqdn, route]);
      else wildcardSets.push([parent, route]);
    }
    return new RouteTable<R>(version, [], {
      exact: exactSets.length + exactDeletes.length === 0 ? this.#exact : this.#exact.with(exactSets, exactDeletes),
      wildcard: wildcardSets.length + wildcardDeletes.length === 0 ? this.#wildcard : this.#wildcard.with(wildcardSets, wildcardDeletes),
    });
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
    for (const [parent, route] of this.#wildcard.entries()) yield [`*.${parent}`, route];
  }
}
