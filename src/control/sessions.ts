import type { CertificateSpec } from '../vhost/index.js';
/** A cluster a session has published: the routing state holds the same data as a RouteSpec. */
export interface PublishedCluster {
  /** The publish message's uuid in hex: the cluster's id. */
  readonly id: string;
  readonly fqdn: string;
  readonly members: readonly string[];
  readonly rewrite: string | null;
  /** The session's own certificate for the fqdn (validated at publish), or null. */
  readonly certificate: CertificateSpec | null;
}

/** What the admin status page shows of a session. */
export interface SessionInfo {
  /** The session id (the `rid` of the protocol), hex. */
  readonly rid: string;
  /** The account's free-text name. */
  readonly account: string;
  /** The account's public key, base64. */
  readonly publicKey: string;
  /** False while the connection is gone and the grace window runs. */
  readonly connected: boolean;
  /** When the session began, ms since the epoch. */
  readonly since: number;
  /** The fqdns it has published. */
  readonly fqdns: readonly string[];
}

/** A session remembers at least this many of its most recent nonces (at most twice as many). */
const NONCE_MEMORY = 8192;

/**
 * One client session: its keys, its current connection (a ZeroMQ routing id, or none during the
 * grace window), what it has published, and its replay memory and rate limit. Owned by the
 * {@link SessionTable}; mutated only by the control plane.
 */
export class Session {
  readonly ridHex: string;
  /** The base64 public key of the account. */
  readonly publicKey: string;
  readonly since: number;
  accountName: string;
  sessionKey: Uint8Array;
  /** The connection's ZeroMQ routing id, or null while disconnected. */
  peer: Buffer | null = null;
  /**
   * Whether a frame sealed with this session's key has arrived: only then is it known that the client
   * holds the account's secret key (an `auth` names a public key, which is no secret).
   */
  proven = false;
  /**
   * A resumption of this live session by another connection, waiting for its proof: it takes over
   * once a frame sealed with its key arrives, or once the live connection is lost.
   */
  pending: { readonly sessionKey: Uint8Array; readonly peer: Buffer } | undefined;
  disconnectedAt: number | null = null;
  graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Published clusters by id. */
  readonly clusters = new Map<string, PublishedCluster>();
  /** Commands run one after another per session (replies keep their order), never across sessions. */
  tail: Promise<void> = Promise.resolve();
  ended = false;
  readonly #nonces = new NonceMemory(NONCE_MEMORY);
  readonly #bucket: TokenBucket;

  constructor(
    readonly rid: Uint8Array,
    init: { publicKey: string; accountName: string; sessionKey: Uint8Array; now: number; messagesPerSecond: number },
  ) {
    this.ridHex = Buffer.from(rid).toString('hex');
    this.publicKey = init.publicKey;
    this.accountName = init.accountName;
    this.sessionKey = init.sessionKey;
    this.since = init.now;
    this.#bucket = new TokenBucket(init.messagesPerSecond, init.now);
  }

  /** Records a nonce; false when it was already seen in this session (a replay). */
  firstUse(nonce: Uint8Array): boolean {
    return this.#nonces.firstUse(Buffer.from(nonce).toString('base64'));
  }

  /** A new session key (re-handshake): nonces seen under the old key no longer matter. */
  rekey(sessionKey: Uint8Array): void {
    this.sessionKey = sessionKey;
    this.#nonces.clear();
  }

  /** Takes one message's worth from the rate limit; false when the session is over it. */
  allow(now: number): boolean {
    return this.#bucket.take(now);
  }

  /** A plain description for status pages. */
  info(): SessionInfo {
    return Object.freeze({
      rid: this.ridHex,
      account: this.accountName,
      publicKey: this.publicKey,
      connected: this.peer !== null,
      since: this.since,
      fqdns: Object.freeze([...this.clusters.values()].map((c) => c.fqdn)),
    });
  }
}

/**
 * Bounded replay memory: two generations of seen nonces; when the current one is full it becomes
 * the previous one. Remembers at least the last `size` nonces, and costs memory only as nonces
 * arrive (an idle session holds two empty sets, where a preallocated LRU would hold its capacity).
 */
export class NonceMemory {
  #current = new Set<string>();
  #previous = new Set<string>();

  constructor(readonly size: number) {}

  /** Records a nonce; false when it is already remembered. */
  firstUse(nonce: string): boolean {
    if (this.#current.has(nonce) || this.#previous.has(nonce)) return false;
    if (this.#current.size >= this.size) {
      this.#previous = this.#current;
      this.#current = new Set();
    }
    this.#current.add(nonce);
    return true;
  }

  clear(): void {
    this.#current.clear();
    this.#previous.clear();
  }
}

/** A token bucket: `rate` tokens a second, bursts up to `rate`. */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(readonly rate: number, now: number) {
    this.#tokens = rate;
    this.#last = now;
  }

  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    this.#tokens = Math.min(this.rate, this.#tokens + (elapsed * this.rate) / 1000);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** Sessions by rid and by current connection. */
export class SessionTable {
  readonly #byRid = new Map<string, Session>();
  readonly #byPeer = new Map<string, Session>();
  readonly #pendingByPeer = new Map<string, Session>();

  /** The session holding this rid, if still held. */
  byRid(rid: Uint8Array): Session | undefined {
    return rid.length === 0 ? undefined : this.#byRid.get(Buffer.from(rid).toString('hex'));
  }

  /** The session a connection is authenticated as, if any. */
  byPeer(peer: Buffer): Session | undefined {
    return this.#byPeer.get(peer.toString('hex'));
  }

  add(session: Session): void {
    this.#byRid.set(session.ridHex, session);
  }

  /** Binds a connection to a session: a connection belongs to one session, a session has one connection. */
  attach(session: Session, peer: Buffer, now: number): void {
    const other = this.#byPeer.get(peer.toString('hex'));
    if (other && other !== session) this.detach(other, now);
    if (session.peer) this.#byPeer.delete(session.peer.toString('hex'));
    session.peer = peer;
    session.disconnectedAt = null;
    this.#byPeer.set(peer.toString('hex'), session);
  }

  /** Forgets a session's connection (the grace window starts). */
  detach(session: Session, now: number): void {
    if (!session.peer) return;
    if (this.#byPeer.get(session.peer.toString('hex')) === session) this.#byPeer.delete(session.peer.toString('hex'));
    session.peer = null;
    session.disconnectedAt = now;
  }

  /** Removes a session for good. */
  delete(session: Session): void {
    this.settlePending(session, false, 0);
    if (session.peer && this.#byPeer.get(session.peer.toString('hex')) === session) this.#byPeer.delete(session.peer.toString('hex'));
    this.#byRid.delete(session.ridHex);
  }

  /** How many sessions (connected or in their grace window) the account with this public key holds. */
  countOf(publicKey: string): number {
    let count = 0;
    for (const session of this.#byRid.values()) if (session.publicKey === publicKey) count++;
    return count;
  }

  /** The account's sessions whose client has not yet sent a sealed frame, oldest first. */
  unprovenOf(publicKey: string): Session[] {
    return [...this.#byRid.values()].filter((s) => s.publicKey === publicKey && !s.proven).sort((a, b) => a.since - b.since);
  }

  /** Routes `peer`'s frames to `session` as a resumption waiting for its proof (see {@link Session.pending}). */
  attachPending(session: Session, peer: Buffer, sessionKey: Uint8Array): void {
    if (session.pending) this.#pendingByPeer.delete(session.pending.peer.toString('hex'));
    session.pending = { sessionKey, peer };
    this.#pendingByPeer.set(peer.toString('hex'), session);
  }

  /** The session `peer` is resuming, if its proof is still awaited. */
  pendingFor(peer: Buffer): Session | undefined {
    return this.#pendingByPeer.get(peer.toString('hex'));
  }

  /** Forgets `session`'s pending resumption; with `takeOver`, its connection and key replace the live ones. */
  settlePending(session: Session, takeOver: boolean, now: number): void {
    const pending = session.pending;
    if (!pending) return;
    session.pending = undefined;
    this.#pendingByPeer.delete(pending.peer.toString('hex'));
    if (!takeOver) return;
    session.rekey(pending.sessionKey);
    this.attach(session, pending.peer, now);
  }

  /** Every session, connected or in its grace window. */
  all(): Session[] {
    return [...this.#byRid.values()];
  }

  /** Connected sessions. */
  connected(): Session[] {
    return [...this.#byPeer.values()];
  }
}
