import type { ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import type { RoutingState } from '../vhost/index.js';
import { Commands } from './commands.js';
import type { Results } from './commands.js';
import { Domains } from './domains.js';
import { ControlError } from './errors.js';
import { encodeHandshakeRefusal, openSealed, randomBytes, readAuth, readSealed, sealMessage } from './frames.js';
import type { FrameProblem, KeyPair, OpenMessage } from './frames.js';
import { acceptAuth } from './handshake.js';
import { encodeKey, loadOrCreateGatewayKeys } from './keys.js';
import type { RoutingStateBuilder } from './routing-state.js';
import { restoreSessions } from './restore.js';
import { RouterTransport } from './server.js';
import { SessionTable } from './sessions.js';
import type { Session, SessionInfo } from './sessions.js';
import { openStore } from './store.js';
import type { ControlStore } from './store.js';
import { createTxtLookup } from './txt-lookup.js';

/** What the control plane runs on; main.ts builds it from the config. */
export interface ControlPlaneOptions {
  /** host '' = every interface; port 0 = any free port (read back with {@link ControlPlane.port}). */
  listen: ListenAddress;
  /** The gateway key pair and the SQLite store live here. */
  stateDir: string;
  globalDomains: readonly string[];
  /** The DNS server (`ip:port`) domain claims look their TXT record up on; null or absent = the system's resolvers. */
  dnsServer?: string | null;
  sessionGraceMs: number;
  maxFrameBytes: number;
  messagesPerSecond: number;
  /** Sessions one account may hold at once (connected or in their grace window); {@link DEFAULT_MAX_SESSIONS_PER_ACCOUNT} when absent. */
  maxSessionsPerAccount?: number;
  /** Clusters one session may publish; 1000 when absent. */
  maxClustersPerSession?: number;
  /** Domains one account may have prepared and not yet claimed; 100 when absent. */
  maxPendingDomainsPerAccount?: number;
  /** The routing state's one writer. */
  routing: RoutingStateBuilder;
  /** Installs a routing state in every data plane; resolves once live (a publish is answered only after it resolves). */
  applyRouting: (state: RoutingState) => Promise<void>;
  log: Logger;
  /** Injected clock, ms since the epoch. */
  now?: () => number;
  /** Told how each command ended (metrics); `refused` is a ControlError reply, `error` a failure inside the gateway. */
  onCommand?: (command: string, result: 'ok' | 'refused' | 'error') => void;
}

/** Sessions one account may hold at once unless told otherwise. */
export const DEFAULT_MAX_SESSIONS_PER_ACCOUNT = 64;

/** The command sent to probe a connection: clients ignore commands they do not know. */
const PROBE_COMMAND = 'probe';
const EMPTY = new Uint8Array(0);
/** How often another process's changes to the accounts are looked for. */
const ACCOUNTS_CHECK_MS = 500;

/**
 * The control plane: the ROUTER socket, handshakes, sessions and their grace windows, and the
 * dispatch of decrypted commands (protocol.md). Every frame is handled without waiting on another
 * session: commands run one at a time per session, concurrently across sessions.
 *
 * Dead connections are found at the transport: ZMTP heartbeats make libzmq drop a silent peer, and
 * an encrypted `probe` frame sent with ROUTER_MANDATORY (after every disconnect event, and
 * periodically) fails for a peer that is gone. Nothing expires a live connection that merely sends
 * no `heartbeat`.
 */
export class ControlPlane {
  readonly #options: ControlPlaneOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #sessions = new SessionTable();
  /** Built at start, once the store is open. */
  #commands: Commands | undefined;
  #keys: KeyPair | undefined;
  #store: ControlStore | undefined;
  #transport: RouterTransport | undefined;
  #receiving: Promise<void> | undefined;
  #port = 0;
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  #probeSoon: ReturnType<typeof setTimeout> | undefined;
  #stopWatching: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  /** Sessions being ended (their clusters being unpublished). */
  readonly #ending = new Set<Promise<void>>();

  constructor(options: ControlPlaneOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Creates the key pair if missing, opens the store, takes back the sessions of the previous run
   * (held, with their clusters installed in the data plane, each given the grace window from now),
   * binds the socket and starts serving.
   */
  async start(): Promise<void> {
    if (this.#transport) throw new Error('the control plane is already started');
    const options = this.#options;
    this.#keys = loadOrCreateGatewayKeys(options.stateDir);
    this.#store = openStore(options.stateDir, { now: this.#now });
    const domains = new Domains({
      store: this.#store,
      globalDomains: options.globalDomains,
      lookupTxt: createTxtLookup(options.dnsServer ?? null),
      now: this.#now,
      randomBytes,
      ...(options.maxPendingDomainsPerAccount !== undefined ? { maxPendingPerAccount: options.maxPendingDomainsPerAccount } : {}),
    });
    this.#commands = new Commands({
      routing: options.routing,
      applyRouting: options.applyRouting,
      domains,
      store: this.#store,
      log: options.log,
      now: this.#now,
      ...(options.maxClustersPerSession !== undefined ? { maxClustersPerSession: options.maxClustersPerSession } : {}),
      notify: (session, log) => void this.#send(session, 'log', EMPTY, { error: true, log }),
    });
    const heartbeatMs = clamp(Math.floor(options.sessionGraceMs / 4), 100, 10_000);
    const transport = new RouterTransport({
      // Frames a little over the limit still arrive, so their sender can be told; far over it, libzmq drops the connection.
      maxMessageBytes: options.maxFrameBytes * 2 + 1024,
      heartbeatIntervalMs: heartbeatMs,
      heartbeatTimeoutMs: heartbeatMs * 3,
    });
    this.#transport = transport;
    // Watched before the restore reads the store: a change another process makes from then on (an
    // account removed, a claim released) is seen, even one made while start-up is still going on.
    this.#stopWatching = this.#store.watch(() => this.#checkAccounts(), ACCOUNTS_CHECK_MS);
    try {
      await this.#restore();
      this.#port = await transport.bind(options.listen);
    } catch (err) {
      this.#stopWatching();
      for (const session of this.#sessions.all()) clearTimeout(session.graceTimer);
      transport.close();
      this.#store.close();
      throw err;
    }
    transport.onDisconnect(() => this.#scheduleProbe());
    this.#receiving = transport.receive((peer, parts) => this.#onFrame(peer, parts)).catch((err: unknown) => {
      this.#log.error({ err }, 'control socket receive loop failed');
    });
    this.#probeTimer = setInterval(() => this.#probeAll(), clamp(Math.floor(options.sessionGraceMs / 4), 50, 5000));
    this.#probeTimer.unref();
    this.#log.info({ port: this.#port, publicKey: this.publicKey }, 'control plane listening');
  }

  /** Held sessions from the store, in the table and the data plane before the socket binds. */
  async #restore(): Promise<void> {
    const restored = restoreSessions({
      store: this.#store!,
      commands: this.#commands!,
      log: this.#log,
      now: this.#now(),
      messagesPerSecond: this.#options.messagesPerSecond,
    });
    if (restored.length === 0) return;
    for (const session of restored) {
      this.#sessions.add(session);
      this.#startGrace(session);
    }
    await this.#options.applyRouting(this.#options.routing.snapshot());
  }

  /** The bound port. */
  get port(): number {
    return this.#port;
  }

  /** The gateway's public key, base64 (what clients need as `--server-key`). */
  get publicKey(): string {
    if (!this.#keys) throw new Error('the control plane is not started');
    return encodeKey(this.#keys.publicKey);
  }

  /** Every session, connected or within its grace window. */
  sessions(): SessionInfo[] {
    return this.#sessions.all().map((session) => session.info());
  }

  /**
   * Tells connected sessions, unpublishes their clusters from the data plane (the store keeps them
   * for the next start), closes the socket and the store. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    clearInterval(this.#probeTimer);
    clearTimeout(this.#probeSoon);
    this.#stopWatching?.();
    const sessions = this.#sessions.all();
    await Promise.all(sessions.map((session) => this.#send(session, 'log', EMPTY, { error: false, log: 'the gateway is shutting down' })));
    for (const session of sessions) {
      clearTimeout(session.graceTimer);
      session.ended = true;
      this.#sessions.delete(session);
      session.tail = session.tail.then(() => this.#commands!.endSession(session, true)).catch((err: unknown) => {
        this.#log.warn({ err, rid: session.ridHex }, 'could not unpublish a session at close');
      });
    }
    await Promise.all([...sessions.map((session) => session.tail), ...this.#ending]);
    this.#transport?.close();
    await this.#receiving;
    this.#store?.close();
  }

  #onFrame(peer: Buffer, parts: Buffer[]): void {
    if (this.#closing) return;
    try {
      const frame = parts[0];
      if (parts.length !== 1 || !frame) {
        this.#log.debug({ parts: parts.length }, 'control frame dropped: not one part');
        return;
      }
      const session = this.#sessions.byPeer(peer);
      const resuming = session ? undefined : this.#sessions.pendingFor(peer);
      if (session) this.#onSessionFrame(session, peer, frame);
      else if (resuming) this.#onResumingFrame(resuming, peer, frame);
      else this.#onStrangerFrame(peer, frame);
    } catch (err) {
      // Nothing a peer sends may take the loop down.
      this.#log.error({ err }, 'control frame handling failed');
    }
  }

  /** Before its handshake, a connection may only authenticate: anything else is dropped silently (protocol.md, Handshake 7). */
  #onStrangerFrame(peer: Buffer, frame: Buffer): void {
    if (frame.length > this.#options.maxFrameBytes) return;
    const auth = readAuth(frame);
    if (auth) this.#onAuth(peer, auth);
  }

  /**
   * A frame from a connection resuming a session that is live elsewhere: sealed with the key its
   * handshake gave, it proves the account's secret key and takes the session over; anything else is
   * dropped like a stranger's (a new `auth` is handled as one).
   */
  #onResumingFrame(session: Session, peer: Buffer, frame: Buffer): void {
    const pending = session.pending;
    if (!pending || frame.length > this.#options.maxFrameBytes) return;
    const sealed = readSealed(frame);
    if (!sealed.ok) {
      const auth = readAuth(frame);
      if (auth) this.#onAuth(peer, auth);
      return;
    }
    if (!openSealed(sealed.message, pending.sessionKey).ok) return;
    this.#takeOver(session);
    this.#onSessionFrame(session, peer, frame);
  }

  /** The pending resumption of `session` replaces its connection and key. */
  #takeOver(session: Session): void {
    this.#sessions.settlePending(session, true, this.#now());
    this.#log.info({ rid: session.ridHex, account: session.accountName }, 'session resumed');
  }

  #onAuth(peer: Buffer, auth: NonNullable<ReturnType<typeof readAuth>>): void {
    const now = this.#now();
    const previous = this.#sessions.byPeer(peer);
    if (!auth.ok) {
      this.#log.info({ reason: auth.reason }, 'handshake refused');
      if (previous) this.#lost(previous, peer);
      void this.#transport!.send(peer, encodeHandshakeRefusal());
      return;
    }
    const outcome = acceptAuth(auth, peer, {
      gatewayKeys: this.#keys!,
      store: this.#store!,
      sessions: this.#sessions,
      now,
      messagesPerSecond: this.#options.messagesPerSecond,
      maxSessionsPerAccount: this.#options.maxSessionsPerAccount ?? DEFAULT_MAX_SESSIONS_PER_ACCOUNT,
    });
    if (!outcome.ok) {
      this.#log.info({ reason: outcome.reason, publicKey: encodeKey(auth.user) }, 'handshake refused');
      if (previous) this.#lost(previous, peer);
      void this.#transport!.send(peer, outcome.reply);
      return;
    }
    const session = outcome.session;
    if (previous && previous !== session) {
      this.#sessions.detach(previous, now);
      this.#startGrace(previous);
    }
    if (outcome.displaced) {
      const displaced = outcome.displaced;
      void this.#send(displaced, 'log', EMPTY, { error: true, log: 'this session was closed: newer sessions of this account were opened and it had sent nothing yet; reconnect' });
      this.#sessions.detach(displaced, now);
      this.#end(displaced, 'displaced before its first message');
    }
    void this.#transport!.send(peer, outcome.reply);
    if (outcome.pending) {
      this.#log.info({ rid: session.ridHex, account: session.accountName }, 'session resumption waits for its first message');
      return;
    }
    clearTimeout(session.graceTimer);
    session.graceTimer = undefined;
    this.#log.info({ rid: session.ridHex, account: session.accountName, resumed: outcome.resumed }, outcome.resumed ? 'session resumed' : 'session opened');
    if (!outcome.resumed) void this.#send(session, 'resource_offer', EMPTY, this.#commands!.offer(session));
  }

  #onSessionFrame(session: Session, peer: Buffer, frame: Buffer): void {
    const now = this.#now();
    if (!session.allow(now)) {
      const sealed = readSealed(frame);
      const uuid = sealed.ok ? sealed.message.uuid : sealed.problem.uuid;
      this.#log.debug({ rid: session.ridHex }, 'control message over the rate limit dropped');
      const reason = `rate limit exceeded (${this.#options.messagesPerSecond} messages a second); message dropped`;
      // Without a uuid the client expects no reply: a `log` tells it instead (protocol.md).
      if (uuid && uuid.length > 0) void this.#reply(session, uuid, { exception: reason });
      else void this.#send(session, 'log', EMPTY, { error: true, log: reason });
      return;
    }
    if (frame.length > this.#options.maxFrameBytes) {
      const sealed = readSealed(frame);
      const uuid = sealed.ok ? sealed.message.uuid : sealed.problem.uuid;
      this.#problem(session, { reason: `frame of ${frame.length} bytes is over the limit of ${this.#options.maxFrameBytes}`, ...(uuid ? { uuid } : {}) });
      return;
    }
    const sealed = readSealed(frame);
    if (!sealed.ok) {
      const auth = readAuth(frame);
      if (auth) this.#onAuth(peer, auth);
      else this.#problem(session, sealed.problem);
      return;
    }
    const opened = openSealed(sealed.message, session.sessionKey);
    if (!opened.ok) {
      this.#problem(session, opened.problem);
      return;
    }
    session.proven = true;
    if (!session.firstUse(sealed.message.nonce)) {
      this.#log.warn({ rid: session.ridHex }, 'replayed control message ignored');
      return;
    }
    const message = opened.message;
    // A throw must neither become an unhandled rejection nor stop the session's later commands.
    session.tail = session.tail
      .then(() => this.#execute(session, message))
      .catch((err: unknown) => this.#log.error({ err, rid: session.ridHex, command: message.command }, 'control command failed unexpectedly'));
  }

  async #execute(session: Session, message: OpenMessage): Promise<void> {
    if (session.ended) return;
    let results: Results;
    try {
      results = await this.#commands!.run(session, message);
    } catch (err) {
      this.#options.onCommand?.(message.command, err instanceof ControlError ? 'refused' : 'error');
      const reason = err instanceof ControlError ? err.message : 'internal error in the gateway';
      if (err instanceof ControlError) this.#log.info({ rid: session.ridHex, command: message.command, reason }, 'control command refused');
      else this.#log.error({ err, rid: session.ridHex, command: message.command }, 'control command failed');
      if (message.uuid.length > 0) await this.#reply(session, message.uuid, { exception: reason });
      else await this.#send(session, 'log', EMPTY, { error: true, log: `${message.command}: ${reason}` });
      return;
    }
    this.#options.onCommand?.(message.command, 'ok');
    if (message.uuid.length > 0) await this.#reply(session, message.uuid, results);
  }

  /** A frame that cannot be used: logged; an exception reply when it named a uuid. */
  #problem(session: Session, problem: FrameProblem): void {
    this.#log.info({ rid: session.ridHex, reason: problem.reason }, 'control frame rejected');
    if (problem.uuid && problem.uuid.length > 0) void this.#reply(session, problem.uuid, { exception: problem.reason });
  }

  #reply(session: Session, uuid: Uint8Array, results: Results): Promise<void> {
    return this.#send(session, '', uuid, results);
  }

  /** Seals and sends a message to the session's current connection; a gone connection starts the grace window. */
  async #send(session: Session, command: string, uuid: Uint8Array, params: unknown): Promise<void> {
    const peer = session.peer;
    if (!peer || !this.#transport) return;
    const result = await this.#transport.send(peer, sealMessage(session.sessionKey, command, uuid, params));
    if (result === 'unreachable') this.#lost(session, peer);
    else if (result === 'busy') this.#log.warn({ rid: session.ridHex }, 'control message dropped: the client does not read');
  }

  /** The connection `peer` of `session` is gone. */
  #lost(session: Session, peer: Buffer): void {
    if (session.ended) return;
    if (session.pending?.peer.equals(peer)) {
      this.#sessions.settlePending(session, false, this.#now());
      return;
    }
    if (session.peer !== peer) return;
    if (session.pending) {
      // The live connection is gone: the resuming one takes over, as it would have on a quiet session.
      this.#takeOver(session);
      return;
    }
    this.#sessions.detach(session, this.#now());
    this.#startGrace(session);
  }

  #startGrace(session: Session): void {
    if (session.ended || session.peer) return;
    if (session.clusters.size === 0) {
      // Nothing to keep for a reconnect: holding it would only count against the account's session limit.
      this.#end(session, 'disconnected with nothing published');
      return;
    }
    this.#log.info({ rid: session.ridHex, graceMs: this.#options.sessionGraceMs }, 'session disconnected');
    clearTimeout(session.graceTimer);
    session.graceTimer = setTimeout(() => {
      if (!session.peer) this.#end(session, 'grace window over');
    }, this.#options.sessionGraceMs);
    session.graceTimer.unref();
  }

  /** Ends a session: forgets it and unpublishes all it published. */
  #end(session: Session, why: string): void {
    if (session.ended) return;
    session.ended = true;
    clearTimeout(session.graceTimer);
    this.#sessions.delete(session);
    session.tail = session.tail
      .then(() => this.#commands!.endSession(session))
      // Logged once its clusters are unpublished in every data plane: the line means "gone".
      .then(() => this.#log.info({ rid: session.ridHex, account: session.accountName, why }, 'session ended'))
      .catch((err: unknown) => this.#log.error({ err, rid: session.ridHex }, 'could not unpublish an ended session'));
    // Shutdown waits for it: the store must not close before the session's clusters are gone from it.
    const ending = session.tail;
    this.#ending.add(ending);
    void ending.finally(() => this.#ending.delete(ending));
  }

  #scheduleProbe(): void {
    if (this.#probeSoon || this.#closing) return;
    // The disconnect event can precede the pipe's removal from the ROUTER: probe a moment later.
    this.#probeSoon = setTimeout(() => {
      this.#probeSoon = undefined;
      this.#probeAll();
    }, 50);
    this.#probeSoon.unref();
  }

  #probeAll(): void {
    if (this.#closing) return;
    for (const session of this.#sessions.connected()) void this.#send(session, PROBE_COMMAND, EMPTY, {});
  }

  /** Another process changed the store: sessions of removed accounts end now; names no longer permitted are unpublished. */
  #checkAccounts(): void {
    if (this.#closing) return;
    for (const session of this.#sessions.all()) {
      const account = this.#store!.findAccount(session.publicKey);
      if (account) {
        session.accountName = account.name;
        continue;
      }
      void this.#send(session, 'log', EMPTY, { error: true, log: 'this account was removed from the gateway; the session is over' });
      if (session.peer) this.#sessions.detach(session, this.#now());
      this.#end(session, 'account removed');
    }
    this.#commands!.revalidate('its domain claim changed').catch((err: unknown) => {
      this.#log.error({ err }, 'could not unpublish names no longer permitted');
    });
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
