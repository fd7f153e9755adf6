/** Base of every error tfgate raises on purpose: a stable code, an HTTP status, and a reason a person can act on. */
export class GatewayError extends Error {
  readonly code: string = 'GW_ERROR';
  readonly statusCode: number = 500;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A name (Host header, SNI, publish message, routes file) that is not a valid hostname. */
export class InvalidHostnameError extends GatewayError {
  override readonly code = 'GW_INVALID_HOSTNAME';
  override readonly statusCode = 400;

  constructor(readonly raw: string, readonly reason: string) {
    super(`invalid hostname ${JSON.stringify(raw.slice(0, 300))}: ${reason}`);
  }
}

/** Configuration that cannot be used: the message names the key and what is wrong with it. */
export class ConfigError extends GatewayError {
  override readonly code = 'GW_CONFIG';
}
