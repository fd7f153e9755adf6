export { RouteTable } from './route-table.js';
export { LayeredMap } from './layered-map.js';
export { RouteTableRef } from './route-table-ref.js';
export { parseRoutesFile, RoutesFileError } from './routes-file.js';
export type { CertificateSpec, RoutingChanges, RoutingState, RouteSpec } from './routing-state.js';
export { decodeRouteSpecs, encodeRouteSpecs } from './route-specs-wire.js';
