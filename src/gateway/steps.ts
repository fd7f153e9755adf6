import type { IncomingMessage } from 'node:http';
import { parseHostname } from '../hostname.js';
import type { GatewayError } from '../errors.js';
import { BadRequestError, HeadersTooLargeError, LoopDetectedError, NotImplementedError } from './errors.js';

/**
 * The request path's small named steps, as pure functions of the request: each returns what it
 * learned or the coded error that refuses the request. Node's parser (llhttp, strict mode) already
 * refuses most malformed framing; these checks cover what it lets through and guard the rest again
 * should the parser ever be run leniently.
 */

/** Where a request goes: its normalised hostname, the authority it named, and the origin-form path. */
export interface RequestTarget {
  readonly hostname: string;
  /** Host as the client wrote it (port included): sent upstream unless the route rewrites it. */
  readonly authority: string;
  readonly path: string;
}

/**
 * Header count, Host and message framing (RFC 9112 §3.2, §6.1, §6.3): too many header lines → 431;
 * several Host lines, several or malformed Content-Length, Content-Length with Transfer-Encoding,
 * Transfer-Encoding on HTTP/1.0 or not ending in `chunked` → 400; codings before `chunked` → 501.
 * Reads `rawHeaders` because Node keeps only the first Host in `req.headers`.
 */
/** The pseudonym tfgate gives itself in Via (RFC 9110 §7.6.3): it names no host or version. */
export const VIA_PSEUDONYM = 'tfgate';

/**
 * How many tfgate hops a request may already have crossed. A member that leads back into a gateway (its
 * own HTTP port, or another gateway routing back) would otherwise loop until connections run out; a
 * legitimate chain of gateways is far shorter.
 */
export const MAX_GATEWAY_HOPS = 4;

/** This gateway's Via entry for the common case, built once rather than per request. */
const VIA_HOP_HTTP11 = `1.1 ${VIA_PSEUDONYM}`;

/** How many Via entries of `via` (one header value, or several joined by commas) were added by tfgate. */
export function gatewayHops(via: string): number {
  let hops = 0;
  for (const entry of via.split(',')) {
    // received-protocol SP received-by [ SP comment ]
    const receivedBy = entry.trim().split(/\s+/)[1];
    if (receivedBy !== undefined && receivedBy.toLowerCase() === VIA_PSEUDONYM) hops++;
  }
  return hops;
}

export function checkHead(req: IncomingMessage, maxHeaderCount: number): GatewayError | undefined {
  const raw = req.rawHeaders;
  if (raw.length > maxHeaderCount * 2) {
    return new HeadersTooLargeError(`${raw.length / 2} header lines, the limit is ${maxHeaderCount}`);
  }
  let hosts = 0;
  let contentLengths = 0;
  let transferEncoding: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Dispatch on length first: most names are none of these and cost one comparison.
    if (name.length === 4) {
      if (isName(name, 'host')) hosts++;
    } else if (name.length === 14) {
      if (isName(name, 'content-length')) {
        if (++contentLengths > 1) return new BadRequestError('several Content-Length headers');
        if (!/^[0-9]+$/.test(raw[i + 1]!)) return new BadRequestError('invalid Content-Length');
      }
    } else if (name.length === 17 && isName(name, 'transfer-encoding')) {
      if (transferEncoding !== undefined) return new BadRequestError('several Transfer-Encoding headers');
      transferEncoding = raw[i + 1]!;
    } else if (name.length === 3 && isName(name, 'via') && gatewayHops(raw[i + 1]!) >= MAX_GATEWAY_HOPS) {
      return new LoopDetectedError(`the request has already crossed ${MAX_GATEWAY_HOPS} tfgate hops: a route's member leads back into a gateway`);
    }
  }
  if (hosts > 1) return new BadRequestError('several Host headers');
  if (transferEncoding !== undefined) {
    if (contentLengths > 0) return new BadRequestError('both Content-Length and Transfer-Encoding');
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return new BadRequestError('Transfer-Encoding in an HTTP/1.0 request');
    const codings = transferEncoding.toLowerCase().split(',');
    if (codings[codings.length - 1]!.trim() !== 'chunked') {
      return new BadRequestError('Transfer-Encoding does not end in chunked: the body length is unknowable');
    }
    if (codings.length > 1) {
      // A coding before `chunked` cannot be forwarded faithfully (undici re-frames the body), RFC 9112 §6.1.
      return new NotImplementedError(`unsupported Transfer-Encoding ${JSON.stringify(transferEncoding.slice(0, 100))}`);
    }
  }
  return undefined;
}

/**
 * The request's hostname and path: from an absolute-form target's own authority (RFC 9112 §3.2.2),
 * else from Host. HTTP/1.1 requires a valid Host either way; a request without one cannot be routed.
 */
export function resolveTarget(req: IncomingMessage): RequestTarget | GatewayError {
  const host = req.headers.host;
  const http11 = req.httpVersionMajor > 1 || req.httpVersionMinor >= 1;
  if (host === undefined && http11) return new BadRequestError('missing Host header');
  let hostname: string | undefined;
  if (host !== undefined) {
    const parsed = parseHostname(utf8(host));
    if (!parsed.ok) return new BadRequestError(`invalid Host header: ${parsed.reason}`);
    hostname = parsed.hostname;
  }
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 0x2f /* / */) {
    if (hostname === undefined || host === undefined) return new BadRequestError('no Host header: cannot tell which site is meant');
    return { hostname, authority: host, path: url };
  }
  return absoluteTarget(url);
}

/** Whether the request carries a body to stream upstream (Node has already checked the framing). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** Header names never forwarded in either direction (RFC 9110 §7.6.1), besides `proxy-*` and those Connection names. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade']);

/**
 * Request headers the gateway sets itself (or that undici must not be given), and those that only a proxy
 * may set: at the edge nothing in front of tfgate is trusted, so a client's `X-Forwarded-Port: 443`,
 * `X-Forwarded-Ssl: on` or `X-Real-IP` would otherwise reach a member that believes them.
 */
const SET_BY_GATEWAY = new Set([
  'host', 'x-forwarded-proto', 'x-forwarded-host', 'expect',
  'forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-ssl', 'x-forwarded-scheme',
]);

/**
 * The flat header list sent upstream: Host first (the route's rewrite or the client's authority),
 * the client's headers in order with repeats kept, hop-by-hop ones removed, then X-Forwarded-For
 * appended to what the client sent, X-Forwarded-Proto/-Host, X-Real-IP and Forwarded (RFC 7239, this
 * hop only) set by us, never trusted from the client.
 */
export function upstreamHeaders(req: IncomingMessage, host: string, forwardedHost: string, proto: string, client: string): string[] {
  const raw = req.rawHeaders;
  const named = connectionNames(raw);
  const out: string[] = ['host', host];
  let forwardedFor: string | undefined;
  let via: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || SET_BY_GATEWAY.has(lower) || lower.startsWith('proxy-') || named?.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'via') {
      via = via === undefined ? raw[i + 1]! : `${via}, ${raw[i + 1]!}`;
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const hop = req.httpVersion === '1.1' ? VIA_HOP_HTTP11 : `${req.httpVersion} ${VIA_PSEUDONYM}`;
  out.push(
    'x-forwarded-for', forwardedFor ? `${forwardedFor}, ${client}` : client,
    'x-forwarded-proto', proto,
    'x-forwarded-host', forwardedHost,
    'x-real-ip', client,
    'forwarded', forwardedElement(client, forwardedHost, proto),
    'via', via ? `${via}, ${hop}` : hop,
  );
  return out;
}

/**
 * This hop's `Forwarded` element (RFC 7239 §4): `for` is the client's address (an IPv6 one bracketed and
 * quoted, §6), `host` the authority the client asked for, quoted since it may hold a port.
 */
export function forwardedElement(client: string, host: string, proto: string): string {
  const node = client.includes(':') ? `"[${client}]"` : client;
  return `for=${node};host=${quoted(host)};proto=${proto}`;
}

/** An RFC 9110 §5.6.4 quoted-string (a Host that passed parseHostname has nothing to escape). */
function quoted(value: string): string {
  const escaped = value.includes('"') || value.includes('\\') ? value.replace(/["\\]/g, '\\$&') : value;
  return `"${escaped}"`;
}

/** The member's response headers for the client: order and repeats (Set-Cookie) kept, hop-by-hop removed. */
export function filterResponseHeaders(raw: readonly (Buffer | string)[]): string[] {
  const out: string[] = [];
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]!);
    const lower = name.toLowerCase();
    if (lower === 'connection') named = addTokens(named, latin1(raw[i + 1]!));
    if (HOP_BY_HOP.has(lower) || lower.startsWith('proxy-')) continue;
    out.push(name, latin1(raw[i + 1]!));
  }
  if (named === undefined) return out;
  // Rare: the member named extra hop-by-hop headers in Connection; drop them in a second pass.
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (!named.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  return kept;
}

/** The client's address as X-Forwarded-For writes it (IPv4-mapped IPv6 shown as plain IPv4). */
export function clientAddress(req: IncomingMessage): string {
  const address = req.socket?.remoteAddress ?? 'unknown'; // socket is null once the response has closed
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function absoluteTarget(url: string): RequestTarget | GatewayError {
  const lower = url.slice(0, 8).toLowerCase();
  const start = lower.startsWith('http://') ? 7 : lower.startsWith('https://') ? 8 : -1;
  if (start === -1) {
    return new BadRequestError(url === '*' ? 'asterisk-form request target is not supported' : 'invalid request target');
  }
  let end = start;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */ || c === 0x23 /* # */) break;
    end++;
  }
  const authority = url.slice(start, end);
  if (authority.includes('@')) return new BadRequestError('userinfo in the request target'); // RFC 9110 §4.2.4
  const parsed = parseHostname(utf8(authority));
  if (!parsed.ok) return new BadRequestError(`invalid authority in the request target: ${parsed.reason}`);
  const rest = url.slice(end);
  const path = rest.length === 0 || rest.charCodeAt(0) === 0x23 ? '/' : rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest;
  const fragment = path.indexOf('#');
  return { hostname: parsed.hostname, authority, path: fragment === -1 ? path : path.slice(0, fragment) };
}

/** Names listed in Connection headers (RFC 9110 §7.6.1), lower case; undefined when there are none. */
function connectionNames(raw: readonly string[]): Set<string> | undefined {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && isName(name, 'connection')) named = addTokens(named, raw[i + 1]!);
  }
  return named;
}

function addTokens(set: Set<string> | undefined, value: string): Set<string> | undefined {
  // Nearly every member says just `Connection: keep-alive` (or close): no header names, nothing to split.
  if (value.length <= 10 && CONNECTION_OPTIONS.has(value.toLowerCase())) return set;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    // close/keep-alive/upgrade are options, not header names; skipping them avoids a Set per request.
    if (name === '' || name === 'close' || name === 'keep-alive' || name === 'upgrade') continue;
    (set ??= new Set()).add(name);
  }
  return set;
}

const CONNECTION_OPTIONS = new Set(['keep-alive', 'close', 'upgrade']);

/**
 * Node reads header bytes as latin1; a client that wrote an IDN in UTF-8 (rather than punycode)
 * gets its name read as UTF-8 so hostname.ts can turn it into punycode. ASCII costs one scan.
 */
function utf8(value: string): string {
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0x7f) {
      const decoded = Buffer.from(value, 'latin1').toString('utf8');
      return decoded.includes('\uFFFD') ? value : decoded;
    }
  }
  return value;
}

function isName(name: string, lower: string): boolean {
  return name === lower || name.toLowerCase() === lower;
}

function latin1(value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('latin1');
}
