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
  return { ok: true, value: Object.freeze({ host: host.hostname, port, address: `${host.hostname}:${port}` }) };
}
