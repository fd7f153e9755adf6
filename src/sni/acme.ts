import { get as httpGet } from 'node:http';
import { Agent, get as httpsGet } from 'node:https';
import type * as AcmeClient from 'acme-client';
import type { Logger } from '../log.js';

type Acme = typeof AcmeClient;
let acmeModule: Promise<Acme> | undefined;

/**
 * acme-client (and its HTTP and X.509 libraries, ~30 MB of memory) is loaded the first time ACME is
 * used, so gateways without ACME, and every worker process, never carry it.
 */
function loadAcme(): Promise<Acme> {
  acmeModule ??= import('acme-client');
  return acmeModule;
}

/** Where HTTP-01 key authorizations are put while an order waits for validation (RFC 8555 §8.3). */
export interface ChallengeSink {
  /** May return a promise that settles once every listener (every worker) can answer the token. */
  set(token: string, keyAuthorization: string): void | Promise<void>;
  delete(token: string): void;
}

/** A certificate chain (leaf first) and its private key, as PEM, as the CA issued them. */
export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Anything that can obtain a certificate for one name; {@link AcmeIssuer} with a real CA, tests may fake it. */
export interface CertificateIssuer {
  issue(fqdn: string, challenges: ChallengeSink): Promise<IssuedCertificate>;
  close(): void;
}

/** What an {@link AcmeIssuer} talks to and as whom. */
export interface AcmeIssuerOptions {
  readonly directoryUrl: string;
  readonly email: string | null;
  /** PEM of the CA(s) that sign the ACME server's own HTTPS certificate, trusted for that server only. */
  readonly caPem: string | null;
  /** The ACME account key (PEM), created once with {@link createAcmeKey} and kept. */
  readonly accountKeyPem: string;
  readonly log: Logger;
  /** Bound on each HTTP request to the ACME server (acme-client has none). */
  readonly requestTimeoutMs?: number;
}

/** An ECDSA P-256 private key (PKCS#8 PEM) for an ACME account or a certificate. */
export async function createAcmeKey(): Promise<string> {
  const acme = await loadAcme();
  return (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
}

/** The error an ACME server gave (RFC 8555 §6.7 problem detail, or the transport's), readable in one line. */
export class AcmeError extends Error {
  readonly code = 'GW_ACME';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AcmeError';
  }
}

/**
 * Orders certificates with HTTP-01 from one ACME directory (the only acme-client import). The
 * account is registered (or found again, since the key identifies it) on the first order.
 * Requests to this directory's origin use an agent that trusts `caPem`; nothing else in the
 * process is affected.
 */
export class AcmeIssuer implements CertificateIssuer {
  readonly #setup: Promise<{ acme: Acme; interceptor: number }>;
  readonly #options: AcmeIssuerOptions;
  readonly #agent: Agent | undefined;
  readonly #log: Logger;
  /**
   * The acme-client Client and its account registration. acme-client keeps the first directory it read
   * for a day, even an error page, so a failed order drops this and the next one starts afresh.
   */
  #session: Promise<AcmeSession> | undefined;

  constructor(options: AcmeIssuerOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#agent = options.caPem !== null ? new Agent({ ca: options.caPem, keepAlive: false }) : undefined;
    this.#setup = loadAcme().then((acme) => {
      const origin = new URL(options.directoryUrl).origin;
      const agent = this.#agent;
      const timeout = this.#timeoutMs;
      // acme-client shares one axios instance; this interceptor only touches requests to our directory.
      const interceptor = acme.axios.interceptors.request.use((config) => {
        if (config.url !== undefined && sameOrigin(config.url, origin)) {
          if (agent !== undefined) config.httpsAgent = agent;
          config.timeout = timeout;
        }
        return config;
      });
      // Its own retries of refused connections wait 5, 10, 15… s; ours (cert-manager.ts back-off) take over sooner.
      const settings = (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number } }).acmeSettings;
      if (settings) {
        settings.retryMaxAttempts = 1;
        settings.retryDefaultDelay = 1;
      }
      return { acme, interceptor };
    });
    // A failure to load surfaces at the first order, as an AcmeError.
    this.#setup.catch(() => undefined);
  }

  /** Orders a certificate for `fqdn` (a new ECDSA P-256 key), answering HTTP-01 through `challenges`; throws {@link AcmeError}. */
  async issue(fqdn: string, challenges: ChallengeSink): Promise<IssuedCertificate> {
    const session = (this.#session ??= this.#newSession());
    try {
      const { acme } = await this.#setup;
      const { client } = await session;
      await this.#ensureAccount(await session);
      const order = await client.createOrder({ identifiers: [{ type: 'dns', value: fqdn }] });
      const authorizations = await client.getAuthorizations(order);
      for (const authorization of authorizations) await this.#authorize(client, authorization, challenges);
      const keyPem = await createAcmeKey();
      const [, csr] = await acme.crypto.createCsr({ commonName: fqdn, altNames: [fqdn] }, keyPem);
      const finalized = await client.finalizeOrder(order, csr);
      const certPem = await client.getCertificate(finalized);
      return { certPem, keyPem };
    } catch (err) {
      if (this.#session === session) this.#session = undefined;
      if (err instanceof AcmeError) throw err;
      throw new AcmeError(isLostTransportError(err) ? await this.#unreachable() : describe(err), { cause: err });
    }
  }

  /** Stops touching acme-client's shared HTTP client. Idempotent. */
  close(): void {
    this.#setup.then(({ acme, interceptor }) => acme.axios.interceptors.request.eject(interceptor), () => undefined);
  }

  get #timeoutMs(): number {
    return this.#options.requestTimeoutMs ?? 30_000;
  }

  async #newSession(): Promise<AcmeSession> {
    const { acme } = await this.#setup;
    // The client polls (authorizations, order) from 0.5 s, doubling to 8 s, at most 12 times (about a minute).
    const client = new acme.Client({ directoryUrl: this.#options.directoryUrl, accountKey: this.#options.accountKeyPem, backoffAttempts: 12, backoffMin: 500, backoffMax: 8_000 });
    return { client, account: undefined };
  }

  #ensureAccount(session: AcmeSession): Promise<void> {
    const email = this.#options.email;
    session.account ??= (async () => {
      await session.client.createAccount({ termsOfServiceAgreed: true, ...(email !== null ? { contact: [`mailto:${email}`] } : {}) });
      this.#log.info({ account: session.client.getAccountUrl() }, 'ACME account ready');
    })();
    return session.account;
  }

  /**
   * Why the ACME server could not be reached. acme-client loses the transport error of a request that
   * got no response (it fails with a TypeError instead), so one plain request to the directory finds it.
   */
  async #unreachable(): Promise<string> {
    const url = this.#options.directoryUrl;
    const reason = await transportError(url, this.#agent, this.#timeoutMs);
    return `cannot reach the ACME server at ${url}: ${reason ?? 'a request got no response'}`;
  }

  async #authorize(client: AcmeClient.Client, authorization: AcmeClient.Authorization, challenges: ChallengeSink): Promise<void> {
    if (authorization.status === 'valid') return;
    const challenge = authorization.challenges.find((c) => c.type === 'http-01');
    if (!challenge) throw new AcmeError(`the ACME server offers no http-01 challenge for ${authorization.identifier.value}`);
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    try {
      await challenges.set(challenge.token, keyAuthorization);
      await client.completeChallenge(challenge);
      await client.waitForValidStatus(challenge);
    } finally {
      challenges.delete(challenge.token);
    }
  }
}

/** One acme-client Client and, once registered, its account. */
interface AcmeSession {
  readonly client: AcmeClient.Client;
  account: Promise<void> | undefined;
}

/** acme-client's way of failing a request that got no response at all (refused, reset, timed out). */
function isLostTransportError(err: unknown): boolean {
  return err instanceof TypeError && err.message.includes("reading 'config'");
}

/** The transport error of one GET of `url` (undefined when it got a response), bounded by `timeoutMs`. */
function transportError(url: string, agent: Agent | undefined, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url, { ...(agent !== undefined ? { agent } : {}), timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(undefined);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code !== undefined && !err.message.includes(err.code) ? `${err.message} (${err.code})` : err.message));
  });
}

function sameOrigin(url: string, origin: string): boolean {
  try {
    return new URL(url).origin === origin;
  } catch {
    return false;
  }
}

/** The ACME problem detail when the server sent one, else the transport error's message. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const response = (err as { response?: { status?: number; data?: unknown } }).response;
  const data = response?.data as { type?: unknown; detail?: unknown } | undefined;
  if (data && typeof data === 'object' && typeof data.detail === 'string') {
    return `${data.detail}${typeof data.type === 'string' ? ` (${data.type})` : ''}`;
  }
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}
