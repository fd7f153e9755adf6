import { BlockList, isIP } from 'node:net';
import { parseHostname } from '../hostname.js';

/** A member address split and normalised: `host` as in a URL (IPv6 bracketed), `port` 1..65535. */
export interface MemberAddress {
  readonly host: string;
  readonly port: number;
  /** `host:port`, the member's identity everywhere (registry key, status, logs). */
  readonly address: string;
}

/** Result of {@link parseMemberAddress}: the address, or the reason it is not one. */
export type MemberAddressResult = { readonly ok: true; readonly value: MemberAddress } | { readonly ok: false; readonly reason: string };

/** Parses `host[:port]` (port defaults to 80, as on a 20ft location); IPv6 hosts must be bracketed. */
export function parseMemberAddress(text: string, defaultPort = 80): MemberAddressResult {
  if (typeof text !== 'string' || text.length === 0) return { ok: false, reason: 'empty member address' };
  let hostPart = text;
  let port = defaultPort;
  const close = text.lastIndexOf(']');
  const colon = text.lastIndexOf(':');
  if (colon > close && (close !== -1 || text.indexOf(':') === colon)) {
    hostPart = text.slice(0, colon);
    const portText = text.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(portText)) return { ok: false, reason: `member ${JSON.stringify(text)}: port is not a number` };
    port = Number(portText);
    if (port < 1 || port > 65535) return { ok: false, reason: `member ${JSON.stringify(text)}: port out of range` };
  }
  const host = parseHostname(hostPart, { allowPort: false });
  if (!host.ok) return { ok: false, reason: `member ${JSON.stringify(text)}: ${host.reason}` };
  if (isIP(host.hostname) === 0 && IPV4_SHORTHAND.test(host.hostname)) {
    return { ok: false, reason: `member ${JSON.stringify(text)}: an IPv4 address in shorthand (${host.hostname}); write it as four decimal numbers, such as 10.0.0.5` };
  }
  const refused = refusedMemberIp(unbracket(host.hostname));
  if (refused !== undefined) return { ok: false, reason: `member ${JSON.stringify(text)}: ${refused}` };
  return { ok: true, value: Object.freeze({ host: host.hostname, port, address: `${host.hostname}:${port}` }) };
}

/**
 * What the system resolver reads as an IPv4 address although it is not a dotted quad (inet_aton: `0`,
 * `0x7f.1`, `2852039166`, `00.0.0.0`). Such a host would pass as a name and reach the address it
 * stands for, past the checks below (the kernel even turns 0.0.0.0 into the gateway host itself).
 */
const IPV4_SHORTHAND = /^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$/i;

/** A member host as net.connect and address checks take it: an IPv6 literal without its brackets. */
export function unbracket(host: string): string {
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

/**
 * Addresses no member may have, whoever publishes it: link-local ones and the IPv6 address of a cloud
 * metadata service (169.254.169.254, fd00:ec2::254: a route there would hand the gateway host's cloud
 * credentials to any client), and the unspecified ones (which reach the gateway host itself).
 */
const REFUSED = new BlockList();
REFUSED.addSubnet('169.254.0.0', 16, 'ipv4');
REFUSED.addSubnet('0.0.0.0', 8, 'ipv4');
REFUSED.addSubnet('fe80::', 10, 'ipv6');
REFUSED.addAddress('::', 'ipv6');
REFUSED.addAddress('fd00:ec2::254', 'ipv6');

/**
 * Why `ip` (an IP address, no brackets or port) may not be a member's, or undefined when it may; not an
 * IP address (a hostname) is undefined too: its addresses are checked when a connection is made. An
 * IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
 */
export function refusedMemberIp(ip: string): string | undefined {
  const mapped = /^::ffff:([0-9.]+)$/i.exec(ip)?.[1];
  const address = mapped ?? ip;
  const family = isIP(address);
  if (family === 0) return undefined;
  if (!REFUSED.check(address, family === 4 ? 'ipv4' : 'ipv6')) return undefined;
  return `${address} is a link-local, unspecified or cloud metadata address, which no member may have`;
}
