import type { Logger } from '../log.js';
import { readFile } from 'node:fs/promises';
import { AcmeIssuer, createAcmeKey } from './acme.js';
import type { CertificateIssuer, ChallengeSink } from './acme.js';
import type { StoredCertificate } from './cert-store.js';
import { AcmeStorage } from './storage.js';
import type { LoadedAcmeCertificate } from './storage.js';

/** A published fqdn as the certificate manager sees it. */
export interface PublishedName {
  readonly fqdn: string;
  /** A session published it with a certificate of its own: no ACME order then. */
  readonly hasSessionCertificate: boolean;
}

/** The part of {@link AcmeStorage} the manager uses (tests may fake it). */
export interface AcmeStore {
  load(): Promise<{ loaded: LoadedAcmeCertificate[]; dropped: { fqdn: string; reason: string }[] }>;
  save(fqdn: string, certPem: string, keyPem: string, directory: string, now: number): Promise<LoadedAcmeCertificate>;
  remove(fqdn: string): Promise<void>;
  close(): void;
}

/** What a {@link CertManager} runs on. */
export interface CertManagerOptions {
  readonly issuer: CertificateIssuer;
  readonly storage: AcmeStore;
  /** The directory URL certificates are ordered from; one stored from another directory is renewed. */
  readonly directory: string;
  readonly log: Logger;
  /** Renew when less than this fraction of a certificate's lifetime remains (1/3 by default). */
  readonly renewFraction?: number;
  /** First retry delay after a failed order; doubles per failure up to `retryMaxMs`. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Orders in flight at once, across names. */
  readonly concurrency?: number;
  /** A renewed certificate is not renewed again sooner than this (guards against a renewFraction near 1). */
  readonly minRenewGapMs?: number;
  /** Told whenever the set of ACME certificates to serve changed (issued, renewed, expired). */
  readonly onChange: (certificates: readonly StoredCertificate[]) => void;
  readonly now?: () => number;
}

/**
 * HTTP-01 key authorizations by token while orders wait for validation: plain data, so a primary
 * can copy it to worker processes; `get` runs on the request path (a map lookup).
 */
export class ChallengeTokens implements ChallengeSink {
  readonly #tokens = new Map<string, string>();
  readonly #listeners = new Set<(tokens: Record<string, string>) => void | Promise<void>>();

  /** Adds a token's key authorization; settles once every listener (every worker) has it. */
  async set(token: string, keyAuthorization: string): Promise<void> {
    this.#tokens.set(token, keyAuthorization);
    await this.#changed();
  }

  /** Removes a token once its challenge is settled. */
  delete(token: string): void {
    if (this.#tokens.delete(token)) this.#changed().catch(() => undefined);
  }

  /** Calls `listener` with every token after each change (to hand them to worker processes). */
  subscribe(listener: (tokens: Record<string, string>) => void | Promise<void>): void {
    this.#listeners.add(listener);
  }

  async #changed(): Promise<void> {
    const tokens = this.toJSON();
    await Promise.all([...this.#listeners].map((listener) => listener(tokens)));
  }

  /** The key authorization for a token, or undefined when no order waits on it. */
  get(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  /** The tokens as a plain record (for IPC). */
  toJSON(): Record<string, string> {
    return Object.fromEntries(this.#tokens);
  }
}

interface NameState {
  held: LoadedAcmeCertificate | undefined;
  ordering: boolean;
  queued: boolean;
  failures: number;
  retryAt: number;
  renewNotBefore: number;
}

/** Names HTTP-01 can prove: at least two labels, not a wildcard, not an IP address. */
const ORDERABLE = /^(?=.*[a-z])[a-z0-9-]+(\.[a-z0-9-]+)+$/;

/** The longest a timer waits (Node's limit is about 24.8 days; an hour also absorbs clock jumps). */
const MAX_TIMER_MS = 3_600_000;

/**
 * Ensures every published, orderable name has an ACME certificate and renews them: one order per
 * name at a time, at most `concurrency` orders at once, one timer for the whole loop (unref'd),
 * failures retried with capped exponential back-off while the old certificate keeps serving.
 * Certificates of names no longer published are kept until they expire (a republish reuses them),
 * then deleted. Owned by the primary process; it never throws into its caller.
 */
export class CertManager {
  /** Key authorizations the HTTP listener answers `/.well-known/acme-challenge/<token>` with. */
  readonly challenges = new ChallengeTokens();
  readonly #o: CertManagerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #renewFraction: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #concurrency: number;
  readonly #minRenewGapMs: number;
  readonly #names = new Map<string, NameState>();
  #published = new Set<string>();
  #skippedLogged = new Set<string>();
  readonly #queue: string[] = [];
  #running = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #served = '';
  #closed = false;

  constructor(options: CertManagerOptions) {
    this.#o = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#renewFraction = options.renewFraction ?? 1 / 3;
    this.#retryMinMs = options.retryMinMs ?? 60_000;
    this.#retryMaxMs = Math.max(this.#retryMinMs, options.retryMaxMs ?? 6 * 3_600_000);
    this.#concurrency = Math.max(1, options.concurrency ?? 2);
    this.#minRenewGapMs = options.minRenewGapMs ?? 60_000;
  }

  /** Loads the stored certificates (served at once, no order placed for them) and starts the loop. */
  async start(): Promise<void> {
    const { loaded, dropped } = await this.#o.storage.load();
    for (const { fqdn, reason } of dropped) this.#log.warn({ fqdn, reason }, 'stored ACME certificate dropped');
    for (const held of loaded) this.#names.set(held.record.fqdn, { ...freshState(), held });
    this.#served = signature(this.certificates());
    this.#log.info({ certificates: loaded.length, directory: this.#o.directory }, 'ACME certificates loaded');
    this.#schedule(0);
  }

  /** The ACME certificates to serve now (unexpired), one per name. */
  certificates(): StoredCertificate[] {
    const now = this.#now();
    const out: StoredCertificate[] = [];
    for (const state of this.#names.values()) {
      if (state.held && state.held.certificate.bundle.notAfter.getTime() > now) out.push(state.held.certificate);
    }
    return out;
  }

  /**
   * The names currently published (the abuse guard: nothing else is ever ordered). Wildcards and
   * names with a session certificate are skipped, logged once per name while it stays published.
   * Costs every published name: the gateway calls it at most a few times a second.
   */
  setPublished(names: Iterable<PublishedName>): void {
    const published = new Set<string>();
    const skipped = new Set<string>();
    for (const { fqdn, hasSessionCertificate } of names) {
      if (hasSessionCertificate) continue;
      if (fqdn.startsWith('*.')) {
        this.#logSkipped(fqdn, 'a wildcard name cannot be proven with HTTP-01: publish it with a certificate, or give the operator one', skipped);
        continue;
      }
      if (!ORDERABLE.test(fqdn)) {
        this.#logSkipped(fqdn, 'not a public DNS name an ACME CA can issue for', skipped);
        continue;
      }
      published.add(fqdn);
    }
    this.#published = published;
    // Only names still published are remembered, so churned names do not accumulate.
    this.#skippedLogged = skipped;
    this.#schedule(0);
  }

  /** Orders that failed since start (the `tfgate_acme_failures_total` counter). */
  failures(): number {
    return this.#failures;
  }

  /** Stops the loop and closes the issuer and storage; orders in flight finish on their own and are neither stored nor served. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#o.issuer.close();
    this.#o.storage.close();
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
  }

  #logSkipped(fqdn: string, reason: string, skipped: Set<string>): void {
    skipped.add(fqdn);
    if (this.#skippedLogged.has(fqdn)) return;
    this.#log.info({ fqdn, reason }, 'no ACME certificate for this name');
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    this.#timer.unref();
  }

  /** The one loop: order what is due, drop what expired unpublished, then sleep until the next due time. */
  #tick(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    const now = this.#now();
    let next = Infinity;
    for (const fqdn of this.#published) if (!this.#names.has(fqdn)) this.#names.set(fqdn, freshState());
    for (const [fqdn, state] of this.#names) {
      const notAfter = state.held?.certificate.bundle.notAfter.getTime();
      if (!this.#published.has(fqdn)) {
        if (state.ordering || state.queued) continue;
        if (notAfter === undefined) this.#names.delete(fqdn);
        else if (notAfter <= now) this.#expire(fqdn);
        else next = Math.min(next, notAfter);
        continue;
      }
      if (state.ordering || state.queued) continue;
      const due = Math.max(state.retryAt, this.#renewAt(state));
      if (due <= now) {
        state.queued = true;
        this.#queue.push(fqdn);
      } else next = Math.min(next, due);
      if (notAfter !== undefined && notAfter > now) next = Math.min(next, notAfter); // stop serving it when it expires
    }
    this.#pump();
    this.#notifyIfChanged();
    if (next !== Infinity) this.#schedule(next - now);
  }

  /** When a held certificate is due for renewal (0: no usable certificate, order now). */
  #renewAt(state: NameState): number {
    const held = state.held;
    if (!held || held.record.directory !== this.#o.directory) return 0;
    const { notBefore, notAfter } = held.certificate.bundle;
    const lifetime = notAfter.getTime() - notBefore.getTime();
    return Math.max(notAfter.getTime() - this.#renewFraction * lifetime, state.renewNotBefore);
  }

  #pump(): void {
    while (this.#running < this.#concurrency && this.#queue.length > 0 && !this.#closed) {
      const fqdn = this.#queue.shift()!;
      const state = this.#names.get(fqdn);
      if (!state) continue;
      state.queued = false;
      if (!this.#published.has(fqdn)) continue; // unpublished while it waited
      state.ordering = true;
      this.#running++;
      void this.#order(fqdn, state).finally(() => {
        state.ordering = false;
        this.#running--;
        this.#schedule(0);
      });
    }
  }

  async #order(fqdn: string, state: NameState): Promise<void> {
    const renewal = state.held !== undefined;
    const started = this.#now();
    this.#log.info({ fqdn, renewal, directory: this.#o.directory }, 'ACME order placed');
    try {
      const issued = await this.#o.issuer.issue(fqdn, this.challenges);
      if (this.#closed) return;
      const now = this.#now();
      state.held = await this.#o.storage.save(fqdn, issued.certPem, issued.keyPem, this.#o.directory, now);
      state.failures = 0;
      state.retryAt = 0;
      state.renewNotBefore = now + this.#minRenewGapMs;
      const { bundle } = state.held.certificate;
      this.#log.info({ fqdn, renewal, issuer: bundle.issuer.replace(/\n/g, ', '), notAfter: bundle.notAfter.toISOString(), tookMs: now - started }, 'ACME certificate issued');
      this.#notifyIfChanged();
    } catch (err) {
      if (this.#closed) return;
      this.#failures++;
      state.failures++;
      const retryInMs = Math.min(this.#retryMaxMs, this.#retryMinMs * 2 ** Math.min(state.failures - 1, 30));
      state.retryAt = this.#now() + retryInMs;
      this.#log.warn({ fqdn, renewal, err, failures: state.failures, retryInMs, keepsServing: renewal }, 'ACME order failed');
    }
  }

  #expire(fqdn: string): void {
    this.#names.delete(fqdn);
    this.#log.info({ fqdn }, 'expired ACME certificate of an unpublished name deleted');
    this.#o.storage.remove(fqdn).catch((err: unknown) => this.#log.warn({ fqdn, err }, 'expired ACME certificate could not be deleted'));
  }

  #notifyIfChanged(): void {
    const certificates = this.certificates();
    const served = signature(certificates);
    if (served === this.#served || this.#closed) return;
    this.#served = served;
    try {
      this.#o.onChange(certificates);
    } catch (err) {
      this.#log.error({ err }, 'ACME certificates could not be installed');
    }
  }
}

/** What {@link startCertManager} needs: the `--acme-*` settings and where files go. */
export interface CertManagerSetup {
  readonly directoryUrl: string;
  readonly email: string | null;
  readonly caFile: string | null;
  readonly renewFraction: number;
  readonly retryMinMs: number;
  readonly certsDir: string;
  readonly stateDir: string;
  readonly log: Logger;
  readonly onChange: (certificates: readonly StoredCertificate[]) => void;
}

/**
 * Opens the ACME storage and account key (made on first start), and starts a {@link CertManager}
 * ordering from `directoryUrl`; no network traffic until a name is published. The manager owns what it opened.
 */
export async function startCertManager(setup: CertManagerSetup): Promise<CertManager> {
  let caPem: string | null = null;
  if (setup.caFile !== null) {
    try {
      caPem = await readFile(setup.caFile, 'utf8');
    } catch (err) {
      throw new Error(`cannot read --acme-ca file ${setup.caFile}: ${(err as Error).message}`, { cause: err });
    }
  }
  const storage = await AcmeStorage.open(setup.certsDir, setup.stateDir);
  let issuer: AcmeIssuer | undefined;
  try {
    const accountKeyPem = await storage.accountKey(createAcmeKey);
    issuer = new AcmeIssuer({ directoryUrl: setup.directoryUrl, email: setup.email, caPem, accountKeyPem, log: setup.log });
    const manager = new CertManager({ ...setup, issuer, storage, directory: setup.directoryUrl });
    await manager.start();
    return manager;
  } catch (err) {
    issuer?.close();
    storage.close();
    throw err;
  }
}

function freshState(): NameState {
  return { held: undefined, ordering: false, queued: false, failures: 0, retryAt: 0, renewNotBefore: 0 };
}

function signature(certificates: readonly StoredCertificate[]): string {
  return certificates.map((c) => c.bundle.id).sort().join(',');
}
