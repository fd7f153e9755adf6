import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { LRUCache } from 'lru-cache';
import type { CertificateBundle } from './certificate.js';
import { nameCovers } from './certificate.js';

/** Where a certificate came from; on a name held by several, the earlier source here wins. */
export type CertificateSource = 'session' | 'operator' | 'acme' | 'default';

const PRECEDENCE: Record<CertificateSource, number> = { session: 0, operator: 1, acme: 2, default: 3 };

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

  /** The context for a bundle, built on first use. */
  get(bundle: CertificateBundle): SecureContext {
    let context = this.#cache.get(bundle.id);
    if (!context) {
      context = createSecureContext({
        cert: bundle.certPem,
        key: bundle.keyPem,
        minVersion: 'TLSv1.2',
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
  readonly #exact = new Map<string, StoredCertificate>();
  /** Keyed by the wildcard's parent: `*.example.com` under `example.com`. */
  readonly #wildcard = new Map<string, StoredCertificate>();
  readonly #default: StoredCertificate;
  readonly #contexts: SecureContextCache;
  readonly #all: readonly StoredCertificate[];

  constructor(defaultCertificate: StoredCertificate, certificates: readonly StoredCertificate[], contexts: SecureContextCache) {
    this.#default = defaultCertificate;
    this.#contexts = contexts;
    this.#all = Object.freeze([defaultCertificate, ...certificates]);
    for (const certificate of certificates) {
      for (const name of certificate.servedFor) {
        const index = name.startsWith('*.') ? this.#wildcard : this.#exact;
        const key = name.startsWith('*.') ? name.slice(2) : name;
        const held = index.get(key);
        if (!held || PRECEDENCE[certificate.source] < PRECEDENCE[held.source] || (held.source === certificate.source && certificate.bundle.notAfter > held.bundle.notAfter)) {
          index.set(key, certificate);
        }
      }
    }
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
    const exact = this.#exact.get(servername);
    if (exact) return exact;
    const dot = servername.indexOf('.');
    return (dot > 0 ? this.#wildcard.get(servername.slice(dot + 1)) : undefined) ?? this.#default;
  }

  /** True when a name has a certificate of its own (not the default). */
  hasOwnCertificate(hostname: string): boolean {
    return this.lookup(hostname) !== this.#default;
  }

  /** The default certificate. */
  get defaultCertificate(): StoredCertificate {
    return this.#default;
  }

  /** Every certificate the store holds, the default first (for status pages). */
  all(): readonly StoredCertificate[] {
    return this.#all;
  }
}

/** True when `certificate` covers `hostname` (its SANs, with TLS wildcard rules). */
export function certificateCovers(certificate: StoredCertificate, hostname: string): boolean {
  return certificate.bundle.names.some((name) => nameCovers(name, hostname));
}
