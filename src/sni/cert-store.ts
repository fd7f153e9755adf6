import { constants } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import type { CertificateBundle } from './certificate.js';
import { nameCovers } from './certificate.js';

/** Where a certificate came from; on a name held by several, the earlier source here wins. */
export type CertificateSource = 'session' | 'operator' | 'acme' | 'default';

const PRECEDENCE: Record<CertificateSource, number> = { session: 0, operator: 1, acme: 2, default: 3 };

/**
 * TLS 1.3's suites, then for TLS 1.2 only ECDHE key exchange with AEAD ciphers (Mozilla's
 * "intermediate" profile, without DHE: no dhparam is configured). Node's default list also takes
 * suites such as AES128-SHA, with no forward secrecy and CBC; every client since about 2013 has these.
 */
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** A certificate the store can serve, and for which names. */
export interface StoredCertificate {
  readonly bundle: CertificateBundle;
  readonly source: CertificateSource;
  /** The file it was loaded from, or the fqdn it was published or ordered for. */
  readonly origin: string;
  /** Names it is served for: a session certificate only for the fqdn it was published with; others for every name they cover. */
  readonly servedFor: readonly string[];
}

/** The certificate chosen for a handshake, with its TLS context. */
export interface SelectedCertificate {
  readonly certificate: StoredCertificate;
  readonly context: SecureContext;
}

/**
 * Builds TLS contexts once per certificate and keeps a bounded number of them; shared by every
 * store snapshot of a process so a swap does not rebuild contexts that did not change.
 */
export class SecureContextCache {
  readonly #cache: LRUCache<string, SecureContext>;
  #ticketKeys: Buffer | undefined;

  /**
   * `ticketKeys` (48 bytes) encrypt TLS session tickets; processes given the same keys resume each
   * other's sessions. Without them each context makes its own.
   */
  constructor(max = 2_000, ticketKeys?: Buffer) {
    this.#cache = new LRUCache({ max });
    this.#ticketKeys = ticketKeys;
  }

  /** Rotates the session ticket keys: contexts are rebuilt with them as they are next used. */
  setTicketKeys(keys: Buffer): void {
    if (this.#ticketKeys?.equals(keys)) return;
    this.#ticketKeys = keys;
    this.#cache.clear();
  }

  /**
   * The context for a bundle, built on first use. OpenSSL refuses TLS 1.2 renegotiation with it (a
   * no_renegotiation alert, RFC 5246 §7.2.2): the gateway asks for no client certificates, so nothing
   * needs it. Node's own limit (3 per 10 minutes) and `disableRenegotiation()` do not work on the
   * standalone TLSSocket of tls-accept.ts: they report through an error event only a tls.Server's
   * sockets emit, so a client could renegotiate thousands of times a second.
   */
  get(bundle: CertificateBundle): SecureContext {
    let context = this.#cache.get(bundle.id);
    if (!context) {
      context = createSecureContext({
        cert: bundle.certPem,
        key: bundle.keyPem,
        minVersion: 'TLSv1.2',
        secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
        ciphers: CIPHERS,
        ...(this.#ticketKeys ? { ticketKeys: this.#ticketKeys } : {}),
      });
      this.#cache.set(bundle.id, context);
    }
    return context;
  }

  get size(): number {
    return this.#cache.size;
  }
}

/**
 * An immutable certificate index: servername → certificate, exact name first, then a one-label
 * wildcard certificate, then the default. `select` runs inside SNICallback: no I/O, no await.
 */
export class CertStore {
  /** Candidates per name, best first (source precedence, then the later expiry). */
  readonly #exact = new Map<string, StoredCertificate[]>();
  /** Keyed by the wildcard's parent: `*.example.com` under `example.com`. */
  readonly #wildcard = new Map<string, StoredCertificate[]>();
  readonly #default: StoredCertificate;
  readonly #contexts: SecureContextCache;
  readonly #all: readonly StoredCertificate[];
  readonly #now: () => number;

  constructor(defaultCertificate: StoredCertificate, certificates: readonly StoredCertificate[], contexts: SecureContextCache, now: () => number = Date.now) {
    this.#default = defaultCertificate;
    this.#contexts = contexts;
    this.#now = now;
    this.#all = Object.freeze([defaultCertificate, ...certificates]);
    for (const certificate of certificates) {
      for (const name of certificate.servedFor) {
        const index = name.startsWith('*.') ? this.#wildcard : this.#exact;
        const key = name.startsWith('*.') ? name.slice(2) : name;
        const held = index.get(key);
        if (held) held.push(certificate);
        else index.set(key, [certificate]);
      }
    }
    const best = (a: StoredCertificate, b: StoredCertificate): number =>
      PRECEDENCE[a.source] - PRECEDENCE[b.source] || b.bundle.notAfter.getTime() - a.bundle.notAfter.getTime();
    for (const index of [this.#exact, this.#wildcard]) for (const list of index.values()) list.sort(best);
    Object.freeze(this);
  }

  /** The certificate for a normalised servername (undefined: no SNI → the default). */
  select(servername: string | undefined): SelectedCertificate {
    const certificate = this.lookup(servername);
    return { certificate, context: this.#contexts.get(certificate.bundle) };
  }

  /** The certificate that would be served for a servername, without building its context. */
  lookup(servername: string | undefined): StoredCertificate {
    if (!servername) return this.#default;
    const now = this.#now();
    const exact = current(this.#exact.get(servername), now);
    if (exact) return exact;
    const dot = servername.indexOf('.');
    return (dot > 0 ? current(this.#wildcard.get(servername.slice(dot + 1)), now) : undefined) ?? this.#default;
  }

  /** True when a name has a certificate of its own (not the default). */
  hasOwnCertificate(hostname: string): boolean {
    return this.lookup(hostname) !== this.#default;
  }

  /** Every certificate the store holds, the default first (for status pages). */
  all(): readonly StoredCertificate[] {
    return this.#all;
  }
}

/**
 * The best candidate still valid at `now`: a certificate that expired while loaded (an operator file
 * not yet replaced) gives way to the next one, e.g. the ACME certificate for the same name.
 */
function current(candidates: readonly StoredCertificate[] | undefined, now: number): StoredCertificate | undefined {
  if (!candidates) return undefined;
  for (const candidate of candidates) if (candidate.bundle.notAfter.getTime() > now) return candidate;
  return undefined;
}

/** True when `certificate` covers `hostname` (its SANs, with TLS wildcard rules). */
export function certificateCovers(certificate: StoredCertificate, hostname: string): boolean {
  return certificate.bundle.names.some((name) => nameCovers(name, hostname));
}
