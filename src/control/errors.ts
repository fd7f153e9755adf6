import { GatewayError } from '../errors.js';

/**
 * A control-plane refusal whose message is meant for the client: the control server turns it into
 * an exception reply (or a `log` message when no reply was asked for).
 */
export class ControlError extends GatewayError {
  override readonly code: string = 'GW_CONTROL';
  override readonly statusCode: number = 400;
}

/** A command's parameters have the wrong shape or type. */
export class BadParamsError extends ControlError {
  override readonly code = 'GW_CONTROL_BAD_PARAMS';
}

/** The session may not do this (another session's cluster or fqdn, a domain it may not use). */
export class ForbiddenError extends ControlError {
  override readonly code = 'GW_CONTROL_FORBIDDEN';
  override readonly statusCode = 403;
}

/** The connection to the gateway failed or was refused (client side). */
export class ConnectionError extends ControlError {
  override readonly code = 'GW_CONTROL_CONNECTION';
  override readonly statusCode = 502;
}

/** The gateway answered a request with an exception (client side); `message` is its reason. */
export class RemoteError extends ControlError {
  override readonly code = 'GW_CONTROL_REMOTE';
}
