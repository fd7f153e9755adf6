import { parse as parseDomainName } from 'tldts';
import { parseHostname, wildcardParent } from '../hostname.js';
import { BadParamsError, ControlError, ForbiddenError } from './errors.js';
import type { ControlStore, DomainClaim } from './store.js';
import type { TxtLookup } from './txt-lookup.js';

/** How long a prepared token may be used (protocol.md, domain commands). */
export const TOKEN_VALIDITY_MS = 6 * 3_600_000;
/** Token length: 32 of 62 symbols is about 190 bits. */
export const TOKEN_LENGTH = 32;
const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** The label under a domain where its token is published. */
export const TOKEN_LABEL = 'tf-token';
/** Domains one account may have prepared and not yet claimed unless told otherwise (each token is stored until a day after it expires). */
export const DEFAULT_MAX_PENDING_DOMAINS_PER_ACCOUNT = 100;

/** The part of the store domain claims use. */
export type DomainStore = Pick<
  ControlStore,
  'putDomainToken' | 'findDomainToken' | 'claimDomain' | 'releaseDomain' | 'setDomainGlobal' | 'overlappingClaims' | 'coveringClaims' | 'listDomainClaims'
>;

/** What the domain rules run on. */
export interface DomainsOptions {
  readonly store: DomainStore;
  /** Normalised `--global-domain` names: global, with no owner. */
  readonly globalDomains: readonly string[];
  readonly lookupTxt: TxtLookup;
  readonly now: () => number;
  readonly randomBytes: (n: number) => Uint8Array;
  /** Unexpired tokens one account may hold (`--max-pending-domains-per-account`); {@link DEFAULT_MAX_PENDING_DOMAINS_PER_ACCOUNT} when absent. */
  readonly maxPendingPerAccount?: number;
}

/**
 * The rules of domain ownership (protocol.md, "Domains in detail"): a DNS TXT proof before a
 * claim, one account per domain tree, the operator's global domains beyond reach, and who may
 * publish which fqdn. Everything is read from the store at each call, so a change made by another
 * gateway process counts at once. The only importer of tldts (the Public Suffix List).
 */
export class Domains {
  readonly #store: DomainStore;
  readonly #globalDomains: readonly string[];
  readonly #lookupTxt: TxtLookup;
  readonly #now: () => number;
  readonly #randomBytes: (n: number) => Uint8Array;
  readonly #maxPendingPerAccount: number;

  constructor(options: DomainsOptions) {
    this.#store = options.store;
    this.#globalDomains = options.globalDomains;
    this.#lookupTxt = options.lookupTxt;
    this.#now = options.now;
    this.#randomBytes = options.randomBytes;
    this.#maxPendingPerAccount = options.maxPendingPerAccount ?? DEFAULT_MAX_PENDING_DOMAINS_PER_ACCOUNT;
  }

  /**
   * Makes a new token for `owner` to put in DNS, replacing its earlier one for the domain; refused
   * when the account already has the most unexpired tokens for other domains it may (each is stored
   * for a day and more, so the limit bounds what one account can make the gateway keep).
   */
  prepare(owner: string, raw: string): { domain: string; token: string } {
    const domain = this.#claimable(owner, raw);
    const token = this.#newToken();
    const stored = this.#store.putDomainToken({ owner, domain, token, expiresAt: this.#now() + TOKEN_VALIDITY_MS }, this.#maxPendingPerAccount);
    if (!stored.ok) {
      throw new ForbiddenError(
        `${domain}: this account already has ${stored.pending} domains prepared and not yet claimed, the most one account may ` +
          `(--max-pending-domains-per-account): claim them (tfgate domains claim <domain>), or wait until a token expires ` +
          `(the next at ${new Date(stored.nextExpiresAt).toISOString()})`,
      );
    }
    return { domain, token };
  }

  /** Claims the domain once its TXT record holds the account's unexpired token; resolves with the normalised name. */
  async claim(owner: string, raw: string): Promise<string> {
    const domain = this.#claimable(owner, raw);
    const prepared = this.#store.findDomainToken(owner, domain);
    if (!prepared) throw new ControlError(`no token for ${domain}: run prepare first (tfgate domains prepare ${domain})`);
    if (this.#now() >= prepared.expiresAt) throw new ControlError(`token expired: run prepare again (tfgate domains prepare ${domain})`);
    const name = `${TOKEN_LABEL}.${domain}`;
    const answer = await this.#lookupTxt(name);
    if (!answer.ok && answer.missing) {
      throw new ControlError(`no TXT record ${name} found: add it with the token from prepare, then claim again`);
    }
    if (!answer.ok) throw new ControlError(`DNS lookup of TXT ${name} failed (${answer.reason}): try again`);
    if (!answer.records.includes(prepared.token)) {
      throw new ControlError(
        `TXT record ${name} does not hold the token of the latest prepare (${answer.records.length} record(s) found): put that token there, then claim again`,
      );
    }
    const outcome = this.#store.claimDomain(owner, domain);
    if (!outcome.ok) throw new ForbiddenError(conflictReason(domain, outcome.conflict));
    return domain;
  }

  /** Gives up the account's claim on a domain; resolves with the normalised name. */
  release(owner: string, raw: string): string {
    const domain = this.#owned(owner, raw, 'released');
    this.#store.releaseDomain(owner, domain);
    return domain;
  }

  /** Makes the account's domain global or private; returns the normalised name. */
  setGlobal(owner: string, raw: string, global: boolean): string {
    const domain = this.#owned(owner, raw, global ? 'made global' : 'made private');
    this.#store.setDomainGlobal(owner, domain, global);
    return domain;
  }

  /** Domains `owner` may publish under: the gateway's global domains, the global claims, and its own claims. */
  list(owner: string): string[] {
    const claims = this.#store.listDomainClaims().filter((claim) => claim.global || claim.owner === owner);
    return [...new Set([...this.#globalDomains, ...claims.map((claim) => claim.domain)])];
  }

  /**
   * Throws a {@link ForbiddenError} unless `owner` may publish `fqdn` (normalised; `domain` is the
   * publish's own domain, named in the refusal): under its own claim or a global domain, and a
   * wildcard only under its own claim and never under a global domain.
   */
  checkPublish(owner: string, fqdn: string, domain: string): void {
    const parent = wildcardParent(fqdn);
    const name = parent ?? fqdn;
    const globalDomain = this.#globalDomains.find((global) => isAtOrUnder(name, global));
    // Runs at every publish (and for every cluster at a revalidation): an indexed lookup, never a scan of all claims.
    const covering = this.#store.coveringClaims(name);
    const own = covering.find((claim) => claim.owner === owner);
    const sharedGlobal = globalDomain ?? covering.find((claim) => claim.global)?.domain;
    if (parent !== undefined) {
      if (sharedGlobal !== undefined) {
        throw new ForbiddenError(`${fqdn}: no wildcard under the global domain ${sharedGlobal} (it would capture other accounts' names); publish exact names there`);
      }
      if (own) return;
    } else if (own || sharedGlobal !== undefined) {
      return;
    }
    const other = covering.find((claim) => claim.owner !== owner);
    if (other) throw new ForbiddenError(`${fqdn}: ${other.domain} is claimed by another account`);
    const offer = this.list(owner);
    throw new ForbiddenError(
      `${fqdn} is not under a domain this account may publish under (${offer.join(', ') || 'none'}): ` +
        `claim ${domain} first (tfgate domains prepare ${domain}, then tfgate domains claim ${domain})`,
    );
  }

  /** The normalised domain if `owner` could claim it (ignoring the DNS proof), else throws the reason. */
  #claimable(owner: string, raw: string): string {
    const domain = normalizeDomain(raw);
    for (const global of this.#globalDomains) {
      if (domain === global) throw new ForbiddenError(`${domain} is a global domain of this gateway: it has no owner, and every account may publish under it without claiming it`);
      if (isAtOrUnder(domain, global)) throw new ForbiddenError(`${domain} is under the global domain ${global}, whose DNS belongs to the gateway's operator: it cannot be claimed`);
      if (isAtOrUnder(global, domain)) throw new ForbiddenError(`${domain} contains the global domain ${global} of this gateway: it cannot be claimed`);
    }
    const conflict = this.#store.overlappingClaims(domain).find((claim) => claim.owner !== owner);
    if (conflict) throw new ForbiddenError(conflictReason(domain, conflict));
    return domain;
  }

  /** The normalised domain when `owner` holds a claim on exactly it, else throws the reason. */
  #owned(owner: string, raw: string, what: string): string {
    const domain = normalizeDomain(raw);
    if (this.#globalDomains.includes(domain)) {
      throw new ForbiddenError(`${domain} is a global domain of this gateway: it has no owner and cannot be ${what}`);
    }
    const claim = this.#store.coveringClaims(domain).find((c) => c.domain === domain);
    if (claim?.owner === owner) return domain;
    if (claim) throw new ForbiddenError(`${domain} is claimed by another account: only its owner can have it ${what}`);
    throw new ForbiddenError(`${domain} is not claimed by this account (claim it with tfgate domains prepare ${domain}, then tfgate domains claim ${domain})`);
  }

  /** 32 letters and digits, uniform: bytes at or above 248 (= 4 × 62) are drawn again. */
  #newToken(): string {
    let token = '';
    while (token.length < TOKEN_LENGTH) {
      for (const byte of this.#randomBytes(TOKEN_LENGTH)) {
        if (byte < 248 && token.length < TOKEN_LENGTH) token += TOKEN_ALPHABET[byte % 62];
      }
    }
    return token;
  }
}

/** A claimable domain name: normalised, not a wildcard or an address, not a bare public suffix. */
export function normalizeDomain(raw: string): string {
  const parsed = parseHostname(raw, { allowPort: false });
  if (!parsed.ok) throw new BadParamsError(`domain ${JSON.stringify(raw.slice(0, 300))}: ${parsed.reason}`);
  const domain = parsed.hostname;
  const info = parseDomainName(domain, { allowPrivateDomains: true, detectIp: true, validateHostname: false });
  if (domain.startsWith('[') || info.isIp) throw new BadParamsError(`domain ${domain}: an IP address is not a domain`);
  if (info.domain === null || info.publicSuffix === domain) {
    throw new BadParamsError(`${domain} is a public suffix: claim a domain registered under it (such as example.${domain})`);
  }
  return domain;
}

/** True when `name` is `domain` or a name under it. */
function isAtOrUnder(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

function conflictReason(domain: string, conflict: DomainClaim): string {
  if (conflict.domain === domain) return `${domain} is claimed by another account`;
  if (isAtOrUnder(domain, conflict.domain)) return `${domain} is under ${conflict.domain}, claimed by another account`;
  return `${domain} contains ${conflict.domain}, claimed by another account`;
}
