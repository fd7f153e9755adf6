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
  // Editors on some systems save UTF-8 with a byte order mark, which JSON.parse refuses.
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new RoutesFileError(`${origin}: not valid JSON (${(err as Error).message})`);
  }
  const duplicate = firstDuplicateKey(json);
  if (duplicate) throw new RoutesFileError(`${origin}: ${duplicate.within.map((key) => `${JSON.stringify(key)}: `).join('')}${JSON.stringify(duplicate.key)} appears twice`);
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
      // Named here: parseAuthority would take "host:80\r\n" for a port that is not a number.
      const control = /[\u0000-\u0020\u007f]/.exec(rewrite);
      if (control) throw new RoutesFileError(`${where}: rewrite: ${describeCharacter(control[0])} is not allowed (a rewrite is one hostname, with an optional :port)`);
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

/**
 * The first object key that appears twice in one object of `json` (already known to be valid JSON),
 * with the keys of the objects it sits in: JSON.parse keeps the last silently. One linear scan.
 */
function firstDuplicateKey(json: string): { key: string; within: string[] } | undefined {
  /** One frame per open object or array; an object's keys so far, and whether a key comes next. */
  const frames: { keys: Set<string> | undefined; expectKey: boolean; key: string }[] = [];
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    const top = frames.at(-1);
    if (c === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === '\\' ? 2 : 1;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(json.slice(i, end + 1)) as string;
        if (top.keys.has(key)) return { key, within: frames.slice(0, -1).flatMap((frame) => (frame.keys ? [frame.key] : [])) };
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = end;
    } else if (c === '{' || c === '[') frames.push({ keys: c === '{' ? new Set() : undefined, expectKey: c === '{', key: '' });
    else if (c === '}' || c === ']') frames.pop();
    else if (c === ',' && top?.keys) top.expectKey = true;
  }
  return undefined;
}

/** `U+000D (carriage return)`: a character a person cannot see in the file, named. */
function describeCharacter(char: string): string {
  const code = char.charCodeAt(0);
  const name = { 0x09: 'tab', 0x0a: 'line feed', 0x0d: 'carriage return', 0x20: 'space' }[code];
  return `character U+${code.toString(16).toUpperCase().padStart(4, '0')}${name ? ` (${name})` : ''}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
