import { domainToASCII } from 'node:url';
import { isIPv6 } from 'node:net';
import { InvalidHostnameError } from './errors.js';

/** Result of parsing a name without throwing: used on hot paths where an exception would cost too much. */
export type HostnameResult = { readonly ok: true; readonly hostname: string } | { readonly ok: false; readonly reason: string };

/** Options for {@link parseHostname}. */
export interface HostnameOptions {
  /** Accept a trailing `:port` and strip it (Host headers, absolute URIs). Default true. */
  readonly allowPort?: boolean;
  /** Accept a leading `*.` label (published wildcard fqdns, certificate SANs). Default false. */
  readonly allowWildcard?: boolean;
}

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;

/**
 * The one place names are normalised: lower case, port stripped, one trailing dot stripped,
 * IDN turned into punycode, IPv6 literals kept bracketed in their canonical form.
 * Hot path (every request's Host): the common all-ASCII case is a single scan with no allocation
 * beyond the returned slice.
 */
export function parseHostname(raw: string, options: HostnameOptions = {}): HostnameResult {
  const allowPort = options.allowPort ?? true;
  if (raw.length === 0) return fail('empty name');
  if (raw.length > MAX_NAME_LENGTH + 8) return fail(`longer than ${MAX_NAME_LENGTH} characters`);
  if (raw.charCodeAt(0) === 0x5b /* [ */) return parseIpv6Literal(raw, allowPort);

  let end = raw.length;
  const colon = raw.lastIndexOf(':');
  if (colon !== -1) {
    if (raw.indexOf(':') !== colon) return fail('an IPv6 address must be written in brackets');
    if (!allowPort) return fail('a port is not allowed here');
    const portError = checkPort(raw, colon + 1);
    if (portError) return fail(portError);
    end = colon;
  }
  let name = end === raw.length ? raw : raw.slice(0, end);
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return fail('empty name');

  let wildcard = false;
  if (name.startsWith('*.')) {
    if (!options.allowWildcard) return fail('a wildcard is not allowed here');
    wildcard = true;
    name = name.slice(2);
  }

  let needsLowering = false;
  let nonAscii = false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) needsLowering = true;
    else if (c > 0x7f) nonAscii = true;
  }
  if (nonAscii) {
    const ascii = domainToASCII(name);
    if (ascii === '') return fail('not a valid internationalised domain name');
    name = ascii;
  } else if (needsLowering) {
    name = name.toLowerCase();
  }
  const labelError = checkLabels(name);
  if (labelError) return fail(labelError);
  return { ok: true, hostname: wildcard ? `*.${name}` : name };
}

/** Like {@link parseHostname} but throws {@link InvalidHostnameError} with the reason. */
export function normalizeHostname(raw: string, options?: HostnameOptions): string {
  const result = parseHostname(raw, options);
  if (!result.ok) throw new InvalidHostnameError(raw, result.reason);
  return result.hostname;
}

/**
 * A Host header value to send (a route's `rewrite`): the name normalised as {@link parseHostname}
 * does, its port, if one was given, kept (`Docs.Internal:8080` → `docs.internal:8080`).
 */
export function parseAuthority(raw: string): HostnameResult {
  const result = parseHostname(raw);
  if (!result.ok) return result;
  const close = raw.lastIndexOf(']');
  const colon = raw.lastIndexOf(':');
  const port = colon > close && (close !== -1 || raw.indexOf(':') === colon) ? raw.slice(colon) : '';
  return { ok: true, hostname: result.hostname + port };
}

/**
 * The one-label wildcard that would cover a normalised name (`a.example.com` → `*.example.com`),
 * or undefined for a name with a single label, an IP literal, or a wildcard itself.
 */
export function wildcardOf(hostname: string): string | undefined {
  const dot = hostname.indexOf('.');
  if (dot <= 0 || hostname.startsWith('*') || hostname.startsWith('[') || isIpv4(hostname)) return undefined;
  return `*${hostname.slice(dot)}`;
}

/** The name a one-label wildcard stands under (`*.example.com` → `example.com`), or undefined for an exact name. */
export function wildcardParent(fqdn: string): string | undefined {
  return fqdn.startsWith('*.') ? fqdn.slice(2) : undefined;
}

function parseIpv6Literal(raw: string, allowPort: boolean): HostnameResult {
  const close = raw.indexOf(']');
  if (close === -1) return fail('unterminated IPv6 literal');
  const address = raw.slice(1, close);
  if (!isIPv6(address) || address.includes('%')) return fail('not a valid IPv6 address');
  if (close + 1 < raw.length) {
    if (raw.charCodeAt(close + 1) !== 0x3a /* : */) return fail('unexpected characters after the IPv6 literal');
    if (!allowPort) return fail('a port is not allowed here');
    const portError = checkPort(raw, close + 2);
    if (portError) return fail(portError);
  }
  // The URL parser gives the canonical (compressed, lower-case) spelling.
  return { ok: true, hostname: new URL(`http://[${address}]/`).hostname };
}

function checkPort(raw: string, start: number): string | undefined {
  const length = raw.length - start;
  if (length === 0) return 'empty port';
  if (length > 5) return 'port out of range';
  let port = 0;
  for (let i = start; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 'port is not a number';
    port = port * 10 + (c - 0x30);
  }
  return port > 65535 ? 'port out of range' : undefined;
}

function checkLabels(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `longer than ${MAX_NAME_LENGTH} characters`;
  let labelStart = 0;
  for (let i = 0; i <= name.length; i++) {
    const c = i === name.length ? 0x2e : name.charCodeAt(i);
    if (c === 0x2e /* . */) {
      const length = i - labelStart;
      if (length === 0) return 'empty label';
      if (length > MAX_LABEL_LENGTH) return `label longer than ${MAX_LABEL_LENGTH} characters`;
      if (name.charCodeAt(labelStart) === 0x2d || name.charCodeAt(i - 1) === 0x2d) {
        return 'a label may not start or end with a hyphen';
      }
      labelStart = i + 1;
      continue;
    }
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d /* - */ || c === 0x5f; /* _ */
    if (!ok) return `character ${describeChar(c)} is not allowed in a hostname`;
  }
  return undefined;
}

function isIpv4(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c !== 0x2e && (c < 0x30 || c > 0x39)) return false;
  }
  return true;
}

function describeChar(code: number): string {
  return code >= 0x21 && code <= 0x7e ? JSON.stringify(String.fromCharCode(code)) : `U+${code.toString(16).padStart(4, '0').toUpperCase()}`;
}

function fail(reason: string): HostnameResult {
  return { ok: false, reason };
}
