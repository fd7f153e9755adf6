export { Gateway } from './gateway.js';
export type { GatewayOptions } from './gateway.js';
export { DataPlane } from './data-plane.js';
export type { Route } from './route.js';
export {
  BadGatewayError,
  BadRequestError,
  HeadersTooLargeError,
  NoMembersError,
  NoRouteError,
  AllMembersDownError,
  NotImplementedError,
  RequestTimeoutError,
  UpstreamTimeoutError,
} from './errors.js';
export { AdminServer } from './admin.js';
export type { AdminSources } from './admin.js';
export { GatewayMetrics, NO_ROUTE, OTHER_ROUTE } from './metrics.js';
export type { ControlResult, MetricSources, RouteTotals, TrafficMetrics } from './metrics.js';
export { buildStatus, countEjected } from './status.js';
export type { GatewayStatus, MemberStatus, StatusInputs, StatusSessionInput } from './status.js';
