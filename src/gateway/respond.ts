import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { HttpsRedirect } from './errors.js';

/**
 * The one place errors become HTTP responses: a short text body that gives the reason, and one log
 * line with the error under `err` (5xx at error level, 4xx at warn: a client's mistake is not the
 * gateway's fault, but it is still worth seeing).
 */

/** Wraps anything thrown into a {@link GatewayError}; an unexpected error is a 500 with the original as cause. */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError(`internal error: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/**
 * Logs a refused or failed request once. A failure (5xx) is the gateway's or a member's problem: an
 * error line with the error, its cause and stack. A refusal (4xx) is the client's, and anyone on the
 * internet can cause thousands: a debug line with the code and reason only (the access log has it too).
 */
export function logFailure(log: Logger, err: GatewayError, fields: Record<string, unknown>): void {
  if (err.statusCode < 400) return; // a redirect: the access log line is enough
  if (err.statusCode >= 500) log.error({ ...fields, code: err.code, status: err.statusCode, err }, 'request failed');
  else log.debug({ ...fields, code: err.code, status: err.statusCode, reason: err.message }, 'request refused');
}

/**
 * Answers `res` with the error's status and reason; returns the body bytes sent. When the response
 * head is already out the only honest signal left is to cut the connection, so the client sees a
 * truncated message.
 * Framing and header errors close the connection: the rest of what the client sends cannot be trusted.
 */
export function sendError(res: ServerResponse, err: GatewayError): number {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return 0;
  }
  const body = `${err.statusCode} ${STATUS_CODES[err.statusCode] ?? 'Error'}: ${err.message}\n`;
  const close = closesConnection(err.statusCode);
  if (close) closeAfter(res);
  res.writeHead(err.statusCode, [
    'Content-Type', 'text/plain; charset=utf-8',
    'Content-Length', String(Buffer.byteLength(body)),
    'Cache-Control', 'no-store',
    ...(err instanceof HttpsRedirect ? ['Location', err.location] : []),
    ...(close ? ['Connection', 'close'] : []),
  ]);
  res.end(body);
  return res.req?.method === 'HEAD' ? 0 : Buffer.byteLength(body);
}

const kClosing = Symbol('tfgate.closing');
type ClosingSocket = Duplex & { [kClosing]?: true };

/**
 * Makes `res` the last response on its connection: it says `Connection: close`, and requests the
 * client pipelined after it are not processed (RFC 9112 §9.6) — see {@link closingConnection}.
 */
export function closeAfter(res: ServerResponse): void {
  res.shouldKeepAlive = false;
  const socket = res.req?.socket as ClosingSocket | null | undefined; // gone once the connection closed
  if (socket) socket[kClosing] = true;
}

/** True once an earlier response on `req`'s connection closes it: `req` must be dropped, not forwarded. */
export function closingConnection(req: IncomingMessage): boolean {
  return (req.socket as ClosingSocket | null)?.[kClosing] === true;
}

/**
 * Answers on a raw socket (client errors caught by the parser, refused upgrades), then closes it.
 * Does nothing but destroy when the socket cannot take a well-formed response any more.
 */
export function writeSocketError(socket: Duplex, err: GatewayError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const reason = STATUS_CODES[err.statusCode] ?? 'Error';
  const body = `${err.statusCode} ${reason}: ${err.message}\n`;
  const location = err instanceof HttpsRedirect ? `Location: ${err.location}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${err.statusCode} ${reason}\r\n${location}Content-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
  lingerThenDestroy(socket);
}

/**
 * After the last answer on a socket the gateway owns (no longer node:http's): half-close and let the
 * client read it — destroying at once could turn unread input into a TCP reset that discards the
 * response — then cut a client that lingers after a short grace (sockets allow half-open here).
 */
export function lingerThenDestroy(socket: Duplex): void {
  const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(linger));
}

const LINGER_MS = 2_000;

function closesConnection(status: number): boolean {
  return status === 400 || status === 408 || status === 413 || status === 431 || status === 501;
}
