export { parseMemberAddress } from './address.js';
export type { MemberAddress, MemberAddressResult } from './address.js';
export { Upstream, DEFAULT_EJECTION } from './upstream.js';
export type { EjectionPolicy } from './upstream.js';
export { createBalancer, BALANCER_NAMES, LeastOutstandingBalancer, RoundRobinBalancer } from './balancers.js';
export type { Balancer, BalancerName } from './balancers.js';
export { Cluster } from './cluster.js';
export { UpstreamRegistry } from './registry.js';
