import { parseAuthority, parseHostname } from '../hostname.js';
import { parseMemberAddress } from '../upstreams/index.js';
import type { RouteSpec } from './routing-state.js';

/** A routes file that cannot be used; the message names the entry and what is wrong with it. */
export class RoutesFileError extends Error {
  readonly code = 'GW_ROUTES_FILE';
}

/**
 * Parses the operator's static routes (`--routes FILE`):
 * `{"docs.example.com": {"members": ["10.0.0.5:8080"], "rewrite": "docs.internal"}, "*.apps.example.com": {...}}`.
 * Everything is validated before anything is returned, so an invalid file changes nothing.
 */
export function parseRoutesFile(text: string, origin = 'routes file'): RouteSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RoutesFileError(`${origin}: not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(parsed)) throw new RoutesFileError(`${origin}: expected a JSON object of fqdn → {"members": [...]}`);
  const specs = new Map<string, RouteSpec>();
  for (const [rawFqdn, entry] of Object.entries(parsed)) {
    const where = `${origin}: ${JSON.stringify(rawFqdn)}`;
    const fqdn = parseHostname(rawFqdn, { allowPort: false, allowWildcard: true });
    if (!fqdn.ok) throw new RoutesFileError(`${where}: ${fqdn.reason}`);
    if (specs.has(fqdn.hostname)) throw new RoutesFileError(`${where}: the same name appears twice (as ${fqdn.hostname})`);
    if (!isPlainObject(entry)) throw new RoutesFileError(`${where}: expected an object with "members"`);
    for (const key of Object.keys(entry)) {
      if (key !== 'members' && key !== 'rewrite') throw new RoutesFileError(`${where}: unknown key ${JSON.stringify(key)} (allowed: members, rewrite)`);
    }
    const { members, rewrite } = entry;
    if (!Array.isArray(members)) throw new RoutesFileError(`${where}: "members" must be an array of "host:port"`);
    const addresses: string[] = [];
    for (const member of members) {
      if (typeof member !== 'string') throw new RoutesFileError(`${where}: every member must be a "host:port" string`);
      const address = parseMemberAddress(member);
      if (!address.ok) throw new RoutesFileError(`${where}: ${address.reason}`);
      if (!addresses.includes(address.value.address)) addresses.push(address.value.address);
    }
    let rewriteHost: string | null = null;
    if (rewrite !== undefined && rewrite !== null) {
      if (typeof rewrite !== 'string') throw new RoutesFileError(`${where}: "rewrite" must be a hostname`);
      const host = parseAuthority(rewrite);
      if (!host.ok) throw new RoutesFileError(`${where}: rewrite: ${host.reason}`);
      rewriteHost = host.hostname;
    }
    specs.set(
      fqdn.hostname,
      Object.freeze({
        fqdn: fqdn.hostname,
        cluster: `static:${fqdn.hostname}`,
        members: Object.freeze(addresses),
        rewrite: rewriteHost,
        source: 'static' as const,
      }),
    );
  }
  return [...specs.values()];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
