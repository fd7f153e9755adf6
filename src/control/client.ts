import { normalizeHostname } from '../hostname.js';
import { ConnectionError, ControlError, RemoteError } from './errors.js';
import { KEY_BYTES, encodeAuth, openSealed, randomBytes, readSealed, sealMessage } from './frames.js';
import type { KeyPair } from './frames.js';
import { openHandshake } from './handshake.js';
import { decodeKey } from './keys.js';
import { DealerTransport } from './server.js';

/**
 * The TypeScript SDK, modelled on 20ft's: a {@link Location} is one session with a gateway; a
 * {@link WebEndpoint} publishes a {@link Cluster} of members at an fqdn under one of the offered
 * domains. The session survives a lost connection: the client re-authenticates with its old rid
 * and the gateway keeps its clusters (within its grace window); if the gateway has forgotten the
 * session (restart, window over), every cluster is published again.
 */

/** How to reach and authenticate to a gateway. */
export interface LocationOptions {
  readonly host: string;
  /** The control port; 2020 by default, as on a 20ft location. */
  readonly port?: number;
  /** The gateway's public key, base64 or 32 bytes. */
  readonly serverKey: string | Uint8Array;
  /** This client's key pair (an authorised account). */
  readonly keys: KeyPair;
  /** How long to wait for the handshake and the resource offer; 10 s by default. */
  readonly connectTimeoutMs?: number;
  /** How long to wait for a reply; 30 s by default. */
  readonly requestTimeoutMs?: number;
  /** Application heartbeats, as the 20ft SDK sends them; 30 s by default, 0 for none. */
  readonly heartbeatIntervalMs?: number;
  /** Messages from the gateway meant for the user (`log`). */
  readonly onLog?: (message: { error: boolean; log: string }) => void;
  /** Connection events: lost, resumed (same session), renewed (a new session, clusters republished). */
  readonly onConnection?: (event: 'lost' | 'resumed' | 'renewed') => void;
}

interface Pending {
  readonly command: string;
  readonly params: Record<string, unknown>;
  readonly uuid: Uint8Array;
  readonly resolve: (results: Record<string, unknown>) => void;
  readonly reject: (err: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  sent: boolean;
}

type State = 'authenticating' | 'ready' | 'disconnected' | 'closed';

/** One session with a gateway. */
export class Location {
  readonly #options: LocationOptions;
  readonly #serverKey: Uint8Array;
  readonly #transport: DealerTransport;
  readonly #pending = new Map<string, Pending>();
  readonly #published = new Map<Cluster, { endpoint: WebEndpoint; fqdn: string; options: PublishOptions }>();
  #state: State = 'authenticating';
  #sessionKey: Uint8Array | undefined;
  #rid: Uint8Array = new Uint8Array(0);
  #domains: readonly string[] = [];
  #awaitingOffer = false;
  #renewing = false;
  /** Settles when clusters published again after a renewal have their new ids. */
  #republishing: Promise<void> = Promise.resolve();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #ready: { resolve: () => void; reject: (err: Error) => void } | undefined;
  #lostResolve: ((err: Error) => void) | undefined;
  /** Settles when the session can no longer continue (the gateway refused to resume it). */
  readonly lost: Promise<Error>;

  private constructor(options: LocationOptions) {
    this.#options = options;
    this.#serverKey = typeof options.serverKey === 'string' ? decodeKey(options.serverKey, 'the server key') : options.serverKey;
    if (this.#serverKey.length !== KEY_BYTES) throw new ControlError(`the server key must be ${KEY_BYTES} bytes`);
    this.#transport = new DealerTransport();
    this.lost = new Promise((resolve) => {
      this.#lostResolve = resolve;
    });
  }

  /** Connects, authenticates and waits for the resource offer. */
  static async connect(options: LocationOptions): Promise<Location> {
    const location = new Location(options);
    try {
      await location.#start();
    } catch (err) {
      location.#shutdown();
      throw err;
    }
    return location;
  }

  /** Domains this account may publish under, from the resource offer. */
  get domains(): readonly string[] {
    return this.#domains;
  }

  /** The session id the gateway gave, hex. */
  get rid(): string {
    return Buffer.from(this.#rid).toString('hex');
  }

  /** The endpoint for the offered domain that `fqdn` is under (the longest such domain). */
  endpointFor(fqdn: string): WebEndpoint {
    const name = normalizeHostname(fqdn, { allowPort: false, allowWildcard: true });
    const base = name.startsWith('*.') ? name.slice(2) : name;
    const domain = [...this.#domains]
      .sort((a, b) => b.length - a.length)
      .find((d) => base === d || base.endsWith(`.${d}`));
    if (domain === undefined) {
      throw new ControlError(`${name} is not under a domain this gateway offers (${this.#domains.join(', ') || 'none'})`);
    }
    return new WebEndpoint(this, domain);
  }

  /** Sends a command and resolves with its results; a gateway exception rejects with {@link RemoteError}. */
  request(command: string, params: Record<string, unknown>, uuid: Uint8Array = randomBytes(16)): Promise<Record<string, unknown>> {
    if (this.#state === 'closed') return Promise.reject(new ConnectionError('the session is closed'));
    return new Promise((resolve, reject) => {
      const key = Buffer.from(uuid).toString('hex');
      const timeoutMs = this.#options.requestTimeoutMs ?? 30_000;
      const timer = setTimeout(() => {
        this.#pending.delete(key);
        reject(new ConnectionError(`${command}: no answer from the gateway within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const pending: Pending = { command, params, uuid, resolve, reject, timer, sent: false };
      this.#pending.set(key, pending);
      if (this.#state === 'ready') this.#sendPending(pending);
    });
  }

  /** Sends a command that asks for no reply (its failure, if any, comes back as a `log` message). */
  async tell(command: string, params: Record<string, unknown>): Promise<void> {
    if (this.#state !== 'ready' || !this.#sessionKey) throw new ConnectionError(`${command}: not connected to the gateway`);
    await this.#transport.send(sealMessage(this.#sessionKey, command, new Uint8Array(0), params));
  }

  /** Ends the session's connection (published clusters stay until the gateway's grace window ends). Idempotent. */
  async close(): Promise<void> {
    this.#shutdown();
  }

  /** @internal Records a published cluster so it can be published again on a new session. */
  _remember(cluster: Cluster, endpoint: WebEndpoint, fqdn: string, options: PublishOptions): void {
    this.#published.set(cluster, { endpoint, fqdn, options });
  }

  /** @internal Waits until clusters published again after a renewal carry their new ids. */
  _settled(): Promise<void> {
    return this.#republishing;
  }

  /** @internal */
  _forget(cluster: Cluster): void {
    this.#published.delete(cluster);
  }

  async #start(): Promise<void> {
    const { host } = this.#options;
    const port = this.#options.port ?? 2020;
    const ready = new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    const timeoutMs = this.#options.connectTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      this.#ready?.reject(new ConnectionError(`no answer from the gateway at ${host}:${port} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    this.#transport.onDisconnect(() => this.#onDisconnect());
    this.#transport.onConnect(() => this.#onConnect());
    void this.#transport.receive((frame) => this.#onFrame(frame)).catch(() => undefined);
    this.#transport.connect(host, port);
    await this.#transport.send(encodeAuth(this.#options.keys.publicKey, this.#rid));
    try {
      await ready;
    } finally {
      clearTimeout(timer);
      this.#ready = undefined;
    }
    const every = this.#options.heartbeatIntervalMs ?? 30_000;
    if (every > 0) {
      this.#heartbeat = setInterval(() => {
        if (this.#state === 'ready') this.tell('heartbeat', {}).catch(() => undefined);
      }, every);
      this.#heartbeat.unref();
    }
  }

  #onDisconnect(): void {
    if (this.#state === 'closed' || this.#state === 'disconnected') return;
    if (this.#ready) return; // the first handshake times out on its own
    this.#state = 'disconnected';
    for (const pending of this.#pending.values()) pending.sent = false;
    this.#options.onConnection?.('lost');
  }

  #onConnect(): void {
    if (this.#state !== 'disconnected') return;
    this.#state = 'authenticating';
    this.#transport.send(encodeAuth(this.#options.keys.publicKey, this.#rid)).catch(() => undefined);
  }

  #onFrame(frame: Buffer): void {
    if (this.#state === 'closed' || this.#state === 'disconnected') return;
    if (this.#state === 'authenticating') {
      this.#onHandshake(frame);
      return;
    }
    const sealed = readSealed(frame);
    if (!sealed.ok || !this.#sessionKey) return;
    const opened = openSealed(sealed.message, this.#sessionKey);
    if (!opened.ok) return;
    const { command, uuid, params } = opened.message;
    const results = Object.fromEntries(params) as Record<string, unknown>;
    if (command === '') {
      const key = Buffer.from(uuid).toString('hex');
      const pending = this.#pending.get(key);
      if (!pending) return;
      this.#pending.delete(key);
      clearTimeout(pending.timer);
      if (typeof results.exception === 'string') pending.reject(new RemoteError(results.exception));
      else pending.resolve(results);
    } else if (command === 'resource_offer') {
      this.#domains = readOfferDomains(results.domains);
      if (this.#awaitingOffer) {
        this.#awaitingOffer = false;
        this.#becomeReady();
      }
    } else if (command === 'log') {
      const text = typeof results.log === 'string' ? results.log : '';
      this.#options.onLog?.({ error: results.error === true, log: text });
    }
    // Anything else (e.g. the gateway's probes) is ignored, as 20ft clients do.
  }

  #onHandshake(frame: Buffer): void {
    let opened: { sessionKey: Uint8Array; rid: Uint8Array };
    try {
      opened = openHandshake(frame, this.#serverKey, this.#options.keys);
    } catch (err) {
      const error = new ConnectionError((err as Error).message);
      if (this.#ready) this.#ready.reject(error);
      else {
        this.#lostResolve?.(error);
        this.#shutdown(error);
      }
      return;
    }
    const resumed = this.#rid.length > 0 && Buffer.compare(Buffer.from(this.#rid), Buffer.from(opened.rid)) === 0;
    const renewed = this.#rid.length > 0 && !resumed;
    this.#sessionKey = opened.sessionKey;
    this.#rid = opened.rid;
    if (resumed) {
      this.#becomeReady();
      this.#options.onConnection?.('resumed');
      return;
    }
    // A new session: its resource offer comes next.
    this.#state = 'ready';
    this.#awaitingOffer = true;
    this.#renewing = renewed;
  }

  #becomeReady(): void {
    this.#state = 'ready';
    if (this.#ready) {
      this.#ready.resolve();
      return;
    }
    for (const pending of this.#pending.values()) if (!pending.sent) this.#sendPending(pending);
    if (this.#renewing) {
      this.#renewing = false;
      this.#options.onConnection?.('renewed');
      this.#republishing = this.#republish();
    }
  }

  async #republish(): Promise<void> {
    for (const [cluster, { endpoint, fqdn, options }] of [...this.#published]) {
      try {
        await endpoint.publish(cluster, fqdn, options);
      } catch (err) {
        this.#options.onLog?.({ error: true, log: `could not publish ${fqdn} again: ${(err as Error).message}` });
      }
    }
  }

  #sendPending(pending: Pending): void {
    if (!this.#sessionKey) return;
    pending.sent = true;
    this.#transport.send(sealMessage(this.#sessionKey, pending.command, pending.uuid, pending.params)).catch((err: unknown) => {
      pending.sent = false;
      if (this.#state === 'closed') pending.reject(err as Error);
    });
  }

  #shutdown(reason: Error = new ConnectionError('the session is closed')): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearInterval(this.#heartbeat);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    this.#pending.clear();
    this.#transport.close();
  }
}

function readOfferDomains(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const domains: string[] = [];
  for (const entry of value) {
    const domain = entry instanceof Map ? entry.get('domain') : undefined;
    if (typeof domain === 'string') domains.push(domain);
  }
  return domains;
}

/** Options of a publish. */
export interface PublishOptions {
  /** Certificate, key and optional chain as one PEM text (not supported by the gateway yet). */
  readonly ssl?: string | null;
  /** Host header sent to the members instead of the client's. */
  readonly rewrite?: string | null;
}

/** Publishes clusters under one offered domain. */
export class WebEndpoint {
  constructor(readonly location: Location, readonly domain: string) {}

  /** Publishes `cluster` at `fqdn` (under this endpoint's domain); resolves once it is live. */
  async publish(cluster: Cluster, fqdn: string, options: PublishOptions = {}): Promise<void> {
    const name = normalizeHostname(fqdn, { allowPort: false, allowWildcard: true });
    let subdomain: string;
    if (name === this.domain) subdomain = '';
    else if (name.endsWith(`.${this.domain}`)) subdomain = name.slice(0, name.length - this.domain.length);
    else throw new ControlError(`${name} is not under ${this.domain}`);
    // The publish message's uuid becomes the cluster's id.
    const id = randomBytes(16);
    await this.location.request(
      'publish_web',
      { domain: this.domain, subdomain, rewrite: options.rewrite ?? null, ssl: options.ssl ?? null, containers: [...cluster.members] },
      id,
    );
    cluster._published(this.location, name, id);
    this.location._remember(cluster, this, name, options);
  }

  /** Unpublishes `cluster`; resolves once it is gone. */
  async unpublish(cluster: Cluster): Promise<void> {
    await this.location._settled();
    const id = cluster._id;
    if (!id) throw new ControlError('that cluster is not published');
    this.location._forget(cluster);
    cluster._unpublished();
    await this.location.request('unpublish_web', { cluster: id });
  }
}

/** A set of members (`host:port`) published together at one fqdn. */
export class Cluster {
  #members: string[];
  #location: Location | undefined;
  #id: Uint8Array | undefined;
  #fqdn: string | undefined;

  constructor(members: readonly string[] = []) {
    this.#members = [...members];
  }

  get members(): readonly string[] {
    return this.#members;
  }

  /** The fqdn it is published at, if published. */
  get fqdn(): string | undefined {
    return this.#fqdn;
  }

  /** Adds a member (at once on the gateway when published). */
  async add(member: string): Promise<void> {
    if (this.#members.includes(member)) return;
    await this.#location?._settled();
    if (this.#location && this.#id) await this.#location.request('add_to_cluster', { cluster: this.#id, container: member });
    this.#members.push(member);
  }

  /** Removes a member (at once on the gateway when published). */
  async remove(member: string): Promise<void> {
    if (!this.#members.includes(member)) return;
    await this.#location?._settled();
    if (this.#location && this.#id) await this.#location.request('remove_from_cluster', { cluster: this.#id, container: member });
    this.#members = this.#members.filter((m) => m !== member);
  }

  /** @internal The cluster id of its last publish. */
  get _id(): Uint8Array | undefined {
    return this.#id;
  }

  /** @internal */
  _published(location: Location, fqdn: string, id: Uint8Array): void {
    this.#location = location;
    this.#fqdn = fqdn;
    this.#id = id;
  }

  /** @internal */
  _unpublished(): void {
    this.#location = undefined;
    this.#id = undefined;
    this.#fqdn = undefined;
  }
}
