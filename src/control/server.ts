import { Context, Dealer, Router } from 'zeromq';
import type { ListenAddress } from '../config.js';
import { GatewayError } from '../errors.js';

/**
 * The ZeroMQ sockets, and the only zeromq import: the gateway's ROUTER and the SDK's DEALER, both
 * behind small message-in/message-out classes so the rest of src/control never sees a zeromq type.
 */

/** What became of a frame handed to {@link RouterTransport.send}. */
export type SendResult = 'sent' | 'unreachable' | 'busy' | 'closed';

// ZMQ_ZERO_COPY_RECV, a context option zeromq.js does not name.
const ZMQ_ZERO_COPY_RECV = 10;

/**
 * The ROUTER's own context, with libzmq's zero-copy receive off. With it on, a received message is a view
 * into an 8 KB decoder buffer allocated by the I/O thread, and zeromq.js hands it to JS as an external
 * Buffer that keeps that whole buffer alive until V8 collects it. A burst of publishes then left hundreds
 * of MB in the I/O thread's malloc arena, nearly all of it free but not given back to the system
 * (measured after 100,000 publishes: 268 MB held, under 1 MB in use). Off, each message gets an
 * allocation of its own size, freed with its Buffer.
 */
class CopyingContext extends Context {
  constructor() {
    super();
    this.setBoolOption(ZMQ_ZERO_COPY_RECV, false);
  }

  get zeroCopyReceive(): boolean {
    return this.getBoolOption(ZMQ_ZERO_COPY_RECV);
  }
}

/** The control socket could not bind its address; `cause` is libzmq's error, its `code` an errno name (EADDRINUSE). */
export class ControlBindError extends GatewayError {
  override readonly code = 'GW_CONTROL_BIND';
}

/** Options of the gateway's ROUTER socket. */
export interface RouterTransportOptions {
  /** libzmq disconnects a peer that sends a larger message (ZMQ_MAXMSGSIZE). */
  readonly maxMessageBytes: number;
  /** ZMTP heartbeats: libzmq pings every peer and drops one that stays silent (clients answer by themselves). */
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
}

/**
 * The gateway's ROUTER socket. Sends are serialised (zeromq allows one in flight) and never wait:
 * ROUTER_MANDATORY makes a frame for a peer that is gone fail with EHOSTUNREACH ('unreachable'),
 * which is how the control plane notices a dead connection; a peer whose queue is full gets 'busy'.
 */
export class RouterTransport {
  readonly #socket: Router;
  readonly #context = new CopyingContext();
  readonly #queue: { peer: Buffer; frame: Uint8Array; resolve: (result: SendResult) => void }[] = [];
  #pumping = false;
  #closed = false;

  constructor(options: RouterTransportOptions) {
    this.#socket = new Router({
      context: this.#context,
      mandatory: true,
      sendTimeout: 0,
      linger: 200,
      maxMessageSize: options.maxMessageBytes,
      heartbeatInterval: options.heartbeatIntervalMs,
      heartbeatTimeout: options.heartbeatTimeoutMs,
      heartbeatTimeToLive: options.heartbeatTimeoutMs,
      sendHighWaterMark: 10_000,
      receiveHighWaterMark: 10_000,
    });
  }

  /** Binds and returns the bound port. Host '' = every interface; port 0 = any free port. */
  async bind(listen: ListenAddress): Promise<number> {
    const host = listen.host === '' ? '*' : listen.host.includes(':') ? `[${listen.host.replace(/^\[|\]$/g, '')}]` : listen.host;
    if (host.startsWith('[')) this.#socket.ipv6 = true;
    const endpoint = `tcp://${host}:${listen.port === 0 ? '*' : String(listen.port)}`;
    try {
      await this.#socket.bind(endpoint);
    } catch (err) {
      throw new ControlBindError(`cannot bind the control socket to ${endpoint}: ${(err as Error).message}`, { cause: err });
    }
    const bound = this.#socket.lastEndpoint ?? '';
    const port = Number(/:([0-9]+)$/.exec(bound)?.[1]);
    if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot read the bound port from ${JSON.stringify(bound)}`);
    return port;
  }

  /**
   * Runs the receive loop until the socket closes: `onFrame(peer, parts)` for every message, where
   * `parts` are the parts after the routing id. Returns when the socket is closed.
   */
  async receive(onFrame: (peer: Buffer, parts: Buffer[]) => void): Promise<void> {
    try {
      for await (const [peer, ...parts] of this.#socket) {
        if (peer) onFrame(peer, parts);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  /** Whether received messages are copied out of libzmq's decoder buffers (see {@link CopyingContext}). */
  get receivesByCopy(): boolean {
    return !this.#context.zeroCopyReceive;
  }

  /** Calls `listener` whenever a peer's connection closes (the event does not say which peer). */
  onDisconnect(listener: () => void): void {
    this.#socket.events.on('disconnect', listener);
  }

  /** Queues a frame for `peer`; resolves with what became of it, never rejects. */
  send(peer: Buffer, frame: Uint8Array): Promise<SendResult> {
    if (this.#closed) return Promise.resolve('closed');
    return new Promise((resolve) => {
      this.#queue.push({ peer, frame, resolve });
      if (!this.#pumping) void this.#pump();
    });
  }

  /** Closes the socket (pending frames get up to the linger period); idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      for (let item = this.#queue.shift(); item; item = this.#queue.shift()) {
        if (this.#closed) {
          item.resolve('closed');
          continue;
        }
        try {
          await this.#socket.send([item.peer, item.frame]);
          item.resolve('sent');
        } catch (err) {
          const code = (err as { code?: string }).code;
          item.resolve(code === 'EHOSTUNREACH' ? 'unreachable' : code === 'EAGAIN' ? 'busy' : 'closed');
        }
      }
    } finally {
      this.#pumping = false;
    }
  }
}

/** Options of the SDK's DEALER socket. */
export interface DealerTransportOptions {
  readonly heartbeatIntervalMs?: number;
  readonly heartbeatTimeoutMs?: number;
  readonly reconnectIntervalMs?: number;
}

/**
 * A client's DEALER socket: one part per frame. libzmq reconnects by itself; `onConnect` fires for
 * every (re)connection so the client can (re)authenticate, `onDisconnect` when one is lost.
 */
export class DealerTransport {
  readonly #socket: Dealer;
  readonly #queue: { frame: Uint8Array; resolve: () => void; reject: (err: Error) => void }[] = [];
  #pumping = false;
  #closed = false;

  constructor(options: DealerTransportOptions = {}) {
    this.#socket = new Dealer({
      linger: 1000,
      reconnectInterval: options.reconnectIntervalMs ?? 500,
      reconnectMaxInterval: 5000,
      heartbeatInterval: options.heartbeatIntervalMs ?? 5000,
      heartbeatTimeout: options.heartbeatTimeoutMs ?? 15_000,
      heartbeatTimeToLive: options.heartbeatTimeoutMs ?? 15_000,
    });
  }

  /** Starts connecting (returns at once; libzmq connects and reconnects in the background). */
  connect(host: string, port: number): void {
    if (host.includes(':')) this.#socket.ipv6 = true;
    this.#socket.connect(`tcp://${host.includes(':') ? `[${host}]` : host}:${port}`);
  }

  /** Called on every successful (re)connection. */
  onConnect(listener: () => void): void {
    this.#socket.events.on('connect', listener);
  }

  /** Called when the connection is lost. */
  onDisconnect(listener: () => void): void {
    this.#socket.events.on('disconnect', listener);
  }

  /** Runs the receive loop until the socket closes; `onFrame` gets each message's first part. */
  async receive(onFrame: (frame: Buffer) => void): Promise<void> {
    try {
      for await (const [frame] of this.#socket) {
        if (frame) onFrame(frame);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  /** Queues a frame; resolves once libzmq has taken it. */
  send(frame: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the connection is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ frame, resolve, reject });
      if (!this.#pumping) void this.#pump();
    });
  }

  /** Closes the socket; frames already queued get up to a second to leave. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
    for (const item of this.#queue.splice(0)) item.reject(new Error('the connection is closed'));
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      for (let item = this.#queue.shift(); item; item = this.#queue.shift()) {
        try {
          await this.#socket.send(item.frame);
          item.resolve();
        } catch (err) {
          item.reject(err as Error);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }
}
