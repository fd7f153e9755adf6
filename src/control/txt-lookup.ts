import { Resolver } from 'node:dns/promises';

/** The TXT records at a name (each record's strings joined), or why there are none. */
export type TxtAnswer =
  | { readonly ok: true; readonly records: readonly string[] }
  | { readonly ok: false; readonly missing: boolean; readonly reason: string };

/** Looks up the TXT records at a name with a fresh DNS query. */
export type TxtLookup = (name: string) => Promise<TxtAnswer>;

/** Answers that mean "the name or its TXT records do not exist", as opposed to "the lookup failed". */
const MISSING = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * A TXT lookup through `server` (`"ip:port"`, as `--dns-server` gives it) or, when null, the
 * system's resolvers. Every lookup builds its own resolver, so no answer (positive or negative) is
 * ever reused: a claim that failed can be retried as soon as the record is in place.
 */
export function createTxtLookup(server: string | null, options: { timeoutMs?: number; tries?: number } = {}): TxtLookup {
  return async (name) => {
    const resolver = new Resolver({ timeout: options.timeoutMs ?? 3000, tries: options.tries ?? 2 });
    if (server !== null) resolver.setServers([server]);
    try {
      const records = await resolver.resolveTxt(name);
      return { ok: true, records: records.map((strings) => strings.join('')) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      return { ok: false, missing: MISSING.has(code), reason: code };
    } finally {
      resolver.cancel();
    }
  };
}
