import { GatewayError } from '../errors.js';
import type { Upstream } from '../upstreams/index.js';
import { BadGatewayError, UpstreamTimeoutError } from './errors.js';

/**
 * How a member's failure becomes a coded gateway error: one mapping for plain requests (forward.ts,
 * undici's error codes) and WebSocket upgrades (websocket.ts, Node's socket and parser codes and the
 * timeouts below). The status is decided here; respond.ts writes the answer.
 */

/** Error codes meaning the connection to the member was never made: eject it, and nothing was sent. */
export const CONNECT_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'GW_CONNECT_TIMEOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'GW_MEMBER_ADDRESS_REFUSED',
]);

/** The member sent no response head within the response timeout (undici's, or the upgrade path's own timer). */
const RESPONSE_TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'GW_RESPONSE_TIMEOUT']);

/** The upgrade path's connect timer fired: the member did not accept the connection in time. */
export class ConnectTimeoutError extends Error {
  readonly code = 'GW_CONNECT_TIMEOUT';
  constructor(timeoutMs: number) {
    super(`no connection within ${timeoutMs} ms`);
  }
}

/** The upgrade path's response timer fired: the member accepted the upgrade request but did not answer it. */
/** A member's name resolved to an address no member may have (see refusedMemberIp); the connection was closed unused. */
export class MemberAddressRefusedError extends Error {
  readonly code = 'GW_MEMBER_ADDRESS_REFUSED';
}

export class ResponseTimeoutError extends Error {
  readonly code = 'GW_RESPONSE_TIMEOUT';
  constructor(timeoutMs: number) {
    super(`no response within ${timeoutMs} ms`);
  }
}

/** True when `err` says the member could not be connected to (the member should be ejected). */
export function isConnectFailure(err: unknown): boolean {
  return CONNECT_ERROR_CODES.has(codeOf(err));
}

/** Maps a member failure onto the gateway's coded errors: 504 for a response timeout, 502 otherwise, with the reason. */
export function toGatewayError(err: Error, member: Upstream): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = codeOf(err);
  if (RESPONSE_TIMEOUT_CODES.has(code)) {
    return new UpstreamTimeoutError(`member ${member.address} sent no response headers in time`, { cause: err });
  }
  if (err instanceof MemberAddressRefusedError) return new BadGatewayError(`member ${member.address}: ${err.message}`, { cause: err });
  if (CONNECT_ERROR_CODES.has(code)) {
    return new BadGatewayError(`cannot connect to member ${member.address} (${code})`, { cause: err });
  }
  if (code.startsWith('HPE_') || err.name === 'HTTPParserError' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return new BadGatewayError(`member ${member.address} sent an invalid HTTP response: ${err.message}${code ? ` (${code})` : ''}`, { cause: err });
  }
  return new BadGatewayError(`member ${member.address} failed: ${err.message}${code ? ` (${code})` : ''}`, { cause: err });
}

/** The `code` of a Node or undici error, or ''. */
export function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}
