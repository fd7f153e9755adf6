import type { RouteSpec, RoutingState } from '../vhost/index.js';

/**
 * The control plane's truth about what is published, as plain data: the operator's static routes
 * and the routes sessions publish. The only writer; each change yields a new frozen
 * {@link RoutingState} with the next version. A static route and a session route never share an fqdn
 * (sessions are refused names the operator's file holds).
 */
export class RoutingStateBuilder {
  #version = 0;
  #static = new Map<string, RouteSpec>();
  readonly #session = new Map<string, RouteSpec>();
  #snapshot: RoutingState | undefined;

  /** Replaces every static route. */
  setStatic(specs: readonly RouteSpec[]): void {
    this.#static = new Map(specs.map((spec) => [spec.fqdn, spec]));
    this.#changed();
  }

  /** True when the operator's routes file holds this fqdn. */
  isStatic(fqdn: string): boolean {
    return this.#static.has(fqdn);
  }

  /** The session route published at this fqdn, if any. */
  sessionRoute(fqdn: string): RouteSpec | undefined {
    return this.#session.get(fqdn);
  }

  /** Publishes (or replaces) a session route. */
  putSession(spec: RouteSpec): void {
    this.#session.set(spec.fqdn, Object.freeze({ ...spec, members: Object.freeze([...spec.members]) }));
    this.#changed();
  }

  /** Removes a session route; returns false when there was none. */
  removeSession(fqdn: string): boolean {
    const removed = this.#session.delete(fqdn);
    if (removed) this.#changed();
    return removed;
  }

  /** The current state, built once per change. */
  snapshot(): RoutingState {
    if (!this.#snapshot) {
      const routes: Record<string, RouteSpec> = Object.create(null) as Record<string, RouteSpec>;
      for (const [fqdn, spec] of this.#session) routes[fqdn] = spec;
      for (const [fqdn, spec] of this.#static) routes[fqdn] = spec;
      this.#snapshot = Object.freeze({ version: this.#version, routes: Object.freeze(routes) });
    }
    return this.#snapshot;
  }

  #changed(): void {
    this.#version++;
    this.#snapshot = undefined;
  }
}
