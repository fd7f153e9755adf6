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
