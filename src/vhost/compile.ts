import type { RouteSpec, RoutingState } from './routing-state.js';
import { RouteTable } from './route-table.js';

/**
 * Compiles the plain routing state into a frozen route table, turning each spec into the data
 * plane's runtime route with `build` (which may reuse live objects, e.g. member counters).
 */
export function compileRoutes<R>(state: RoutingState, build: (spec: RouteSpec) => R): RouteTable<R> {
  const entries: [string, R][] = [];
  for (const spec of Object.values(state.routes)) entries.push([spec.fqdn, build(spec)]);
  return new RouteTable(state.version, entries);
}
