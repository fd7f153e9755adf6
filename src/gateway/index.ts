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
export { GatewayMetrics, NO_ROUTE, OTHER_ROUTE, aggregateMetrics } from './metrics.js';
export type { ControlResult, MetricSources, RouteTotals, TrafficMetrics } from './metrics.js';
export { buildStatus } from './status.js';
export { LocalPlane } from './local-plane.js';
export type { PlaneConfig } from './local-plane.js';
export { WorkerPool } from './workers.js';
export type { PlaneHost } from './plane-host.js';
export { TicketKeyRotation } from './ticket-keys.js';
export { mergeReports } from './plane-report.js';
export type { MemberCounters, PlaneReport } from './plane-report.js';
export type { GatewayStatus, MemberStatus, StatusInputs, StatusSessionInput } from './status.js';
