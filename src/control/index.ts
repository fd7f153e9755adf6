/**
 * The control plane (server) and the client SDK: sessions publish clusters over ZeroMQ + NaCl
 * (../shared/protocol.md). Other folders import src/control through this file only.
 */
export { ControlPlane } from './control-plane.js';
export type { ControlPlaneOptions } from './control-plane.js';
export type { SessionInfo } from './sessions.js';
export { RoutingStateBuilder } from './routing-state.js';
export { ControlError, RemoteError } from './errors.js';
export { openStore, STORE_FILE } from './store.js';
export type { ControlStore } from './store.js';
export {
  loadOrCreateGatewayKeys,
  createClientKeys,
  readClientKeys,
  readServerKey,
  defaultKeysDir,
  encodeKey,
  decodeKey,
  GATEWAY_SECRET_FILE,
} from './keys.js';
export type { KeyPair } from './frames.js';
export { Location, WebEndpoint, Cluster } from './client.js';
export type { LocationOptions, PublishOptions } from './client.js';
