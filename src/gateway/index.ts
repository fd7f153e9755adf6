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
export { PlaneMetrics, StateMetrics, aggregateMetrics } from './metrics.js';
export type { PlaneSources, StateSources, TrafficMetrics } from './metrics.js';
export { buildStatus } from './status.js';
export { CertificateCatalog } from './certificate-catalog.js';
export type { CertificateSummary } from './certificate-catalog.js';
export { LocalPlane } from './local-plane.js';
export type { PlaneConfig } from './local-plane.js';
export { WorkerPool } from './workers.js';
export type { PlaneHost } from './plane-host.js';
export { TicketKeyRotation } from './ticket-keys.js';
export type { PlaneReport } from './plane-report.js';
export type { GatewayStatus } from './status.js';
