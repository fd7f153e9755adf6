import { GatewayError } from '../errors.js';

/** The request is malformed or ambiguous (framing, Host): refused before anything goes upstream. */
export class BadRequestError extends GatewayError {
  override readonly code = 'GW_BAD_REQUEST';
  override readonly statusCode = 400;
}

/** The request's header block is over the size or count limit (RFC 6585 §5). */
export class HeadersTooLargeError extends GatewayError {
  override readonly code = 'GW_HEADERS_TOO_LARGE';
  override readonly statusCode = 431;
}

/** The client took too long to send its request headers. */
export class RequestTimeoutError extends GatewayError {
  override readonly code = 'GW_REQUEST_TIMEOUT';
  override readonly statusCode = 408;
}

/** The request uses a method or feature the gateway does not proxy (CONNECT, other transfer codings). */
export class NotImplementedError extends GatewayError {
  override readonly code = 'GW_NOT_IMPLEMENTED';
  override readonly statusCode = 501;
}

/** No route is published for the request's hostname. */
export class NoRouteError extends GatewayError {
  override readonly code = 'GW_NO_ROUTE';
  override readonly statusCode = 404;

  constructor(readonly hostname: string) {
    super(`no route for host ${hostname}`);
  }
}

/** The route's cluster has no members at all. */
export class NoMembersError extends GatewayError {
  override readonly code = 'GW_NO_MEMBERS';
  override readonly statusCode = 503;

  constructor(readonly fqdn: string) {
    super(`cluster for ${fqdn} has no members`);
  }
}

/** Every member of the route's cluster is ejected or refused the connection. */
export class AllMembersDownError extends GatewayError {
  override readonly code = 'GW_ALL_MEMBERS_DOWN';
  override readonly statusCode = 502;

  constructor(readonly fqdn: string, options?: { cause?: unknown }) {
    super(`every member of the cluster for ${fqdn} is down`, options);
  }
}

/** A member accepted the request but sent no response headers within the response timeout. */
export class UpstreamTimeoutError extends GatewayError {
  override readonly code = 'GW_UPSTREAM_TIMEOUT';
  override readonly statusCode = 504;
}

/** A member's answer was unusable: not valid HTTP, an invalid Content-Length, a reset connection. */
export class BadGatewayError extends GatewayError {
  override readonly code = 'GW_BAD_GATEWAY';
  override readonly statusCode = 502;
}

/** Over HTTPS with SNI, the Host is not covered by the certificate presented for that SNI (RFC 9110 §15.5.20). */
export class MisdirectedRequestError extends GatewayError {
  override readonly code = 'GW_MISDIRECTED';
  override readonly statusCode = 421;

  constructor(readonly hostname: string, readonly servername: string) {
    super(`this connection was opened for ${servername}, whose certificate does not cover ${hostname}: open a new connection for it`);
  }
}

/**
 * Not a failure: plain HTTP for a name that has its own certificate is sent to HTTPS. Modelled as a
 * coded answer so the one place that writes answers (respond.ts) writes it too.
 */
export class HttpsRedirect extends GatewayError {
  override readonly code = 'GW_HTTPS_REDIRECT';
  override readonly statusCode = 308;

  constructor(readonly location: string) {
    super(`moved to ${location}`);
  }
}

/** Every available member of the cluster is at its in-flight cap (the circuit breaker is open). */
export class MembersBusyError extends GatewayError {
  override readonly code = 'GW_MEMBERS_BUSY';
  override readonly statusCode = 503;

  constructor(readonly fqdn: string, readonly maxInFlight: number) {
    super(`every available member of the cluster for ${fqdn} has ${maxInFlight} requests in flight: try again shortly`);
  }
}

/** The request has already crossed too many tfgate hops: a route whose member leads back into a gateway (508, RFC 5842 §7.2). */
export class LoopDetectedError extends GatewayError {
  override readonly code = 'GW_LOOP_DETECTED';
  override readonly statusCode = 508;
}

/** The request body is over the body size limit (RFC 9110 §15.5.14). */
export class PayloadTooLargeError extends GatewayError {
  override readonly code = 'GW_PAYLOAD_TOO_LARGE';
  override readonly statusCode = 413;
}

/** A new client connection is over the connection limits; it is answered (HTTP) or closed (HTTPS) at once. */
export class TooManyConnectionsError extends GatewayError {
  override readonly code = 'GW_TOO_MANY_CONNECTIONS';
  override readonly statusCode = 503;
}
