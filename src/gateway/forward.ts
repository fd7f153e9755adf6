import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, buildConnector } from 'undici';
import type { Dispatcher } from 'undici';
import type { Limits } from '../config.js';
import type { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { refusedMemberIp } from '../upstreams/index.js';
import type { Upstream } from '../upstreams/index.js';
import { BadGatewayError, RequestTimeoutError, UpstreamTimeoutError } from './errors.js';
import { CONNECT_ERROR_CODES, MemberAddressRefusedError, codeOf, isConnectFailure, toGatewayError } from './member-errors.js';
import { closeAfter } from './respond.js';
import { filterResponseHeaders } from './steps.js';

/**
 * Forwarding over undici's `Pool.dispatch()` with a raw handler: the only file that imports undici.
 * One keep-alive pool per member; request bodies stream from the IncomingMessage (undici applies
 * the socket's backpressure), response bodies stream to the ServerResponse with pause/resume.
 */

/** What the forwarder needs from one client request, and how it reports each attempt's end. */
export interface ForwardExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** Origin-form path sent upstream. */
  readonly path: string;
  /** Flat `[name, value, …]` list sent upstream (Host first, hop-by-hop removed, X-Forwarded-* set). */
  readonly headers: string[];
  readonly hasBody: boolean;
  /** What is streamed upstream when `hasBody`: the request itself, or it behind a size limit. */
  readonly body: Readable | null;
  /** Set when the client went away before the response was complete. */
  clientGone: boolean;
  /** Response body bytes written to the client. */
  bytes: number;
  /** Time from dispatching the last attempt to the member's response headers, once they arrived. */
  upstreamMs: number | undefined;
  /**
   * One attempt on `member` ended. `err` is undefined when the response was relayed in full.
   * `retryable` says nothing reached the member, or the member closed on a bodiless idempotent
   * request before answering, so another member may be tried.
   */
  upstreamDone(member: Upstream, err: GatewayError | undefined, retryable: boolean): void;
}

/** Errors that leave the request untouched, so another member may take it: connect failures and closed pools. */
const RETRYABLE_ERRORS = new Set([...CONNECT_ERROR_CODES, 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'GW_MEMBER_DROPPED']);

/** The member closed or reset the connection before its answer. */
const CLOSED_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/** Statuses whose responses never have a body, whatever their Content-Length says (RFC 9110 §6.4.1). */
const BODYLESS = new Set([204, 304]);

/** Methods that may be sent twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Informational (1xx) responses a member may send before its final one (RFC 9110 §15.2). Real members
 * send one or two (102, 103); a member sending them without end would keep the attempt, and a CPU,
 * busy for ever.
 */
const MAX_INFORMATIONAL = 32;

/** The bounds every attempt runs under, built once per Forwarder. */
interface AttemptBounds {
  readonly now: () => number;
  /** See Forwarder's queue timeout. */
  readonly queueTimeoutMs: number;
  /**
   * From the request going onto a member connection (or the end of its body, if later) to the final
   * status. undici enforces it too, but restarts it on every 1xx; this bound is not restarted.
   */
  readonly responseTimeoutMs: number;
  /** How long a client may take none of a response while the member's body waits for it (`--idle-timeout`). */
  readonly clientIdleTimeoutMs: number;
}

const kHandler = Symbol('tfgate.forwardHandler');
/** `undefined`: no attempt yet (listeners not attached); `null`: between attempts or done. */
type ForwardedResponse = ServerResponse & { [kHandler]?: ForwardHandler | null };

/**
 * undici's connector, closing a connection whose member name resolved to an address no member may have
 * (a hostname can point anywhere, and an IP literal was already refused at publish).
 */
export function guardedConnector(timeoutMs: number, refuse: (ip: string) => string | undefined = refusedMemberIp): buildConnector.connector {
  const connect = buildConnector({ timeout: timeoutMs });
  return (options, callback) => {
    connect(options, (err, socket) => {
      if (err !== null || socket === null) return callback(err ?? new Error('no socket'), null);
      const refused = refuse(socket.remoteAddress ?? '');
      if (refused === undefined) return callback(null, socket);
      socket.destroy();
      callback(new MemberAddressRefusedError(`${options.hostname} resolved to ${refused}`), null);
    });
  };
}

/** Keep-alive pools per member and the dispatch of one attempt. */
export class Forwarder {
  readonly #pools = new Map<Upstream, Pool>();
  /** Members whose pools were closed: a late retry from an old snapshot must not reopen one. */
  readonly #dropped = new WeakSet<Upstream>();
  readonly #options: Pool.Options;
  /**
   * How long an attempt may wait for a member connection (the pool's queue, then connecting). undici
   * starts its response timeout only once the request is on a connection, so a pool held by slow
   * requests would otherwise keep others waiting without bound; at least the connect timeout, so a
   * connect failure is still reported (and retried) as one.
   */
  readonly #bounds: AttemptBounds;
  readonly #log: Logger;
  #closed = false;

  constructor(limits: Limits, log: Logger, now: () => number = Date.now) {
    this.#log = log;
    this.#options = {
      connections: limits.upstreamMaxConnections,
      connect: guardedConnector(limits.upstreamConnectTimeoutMs),
      headersTimeout: limits.upstreamResponseTimeoutMs,
      // Time between body chunks: long enough for slow streams (SSE heartbeats), still bounded. It
      // stops while the client is slow to read (undici pauses it): ForwardHandler bounds that wait.
      bodyTimeout: Math.max(limits.idleTimeoutMs, limits.upstreamResponseTimeoutMs),
      // Below Node's default 5 s server keep-alive, so we drop idle sockets before the member does.
      keepAliveTimeout: 4_000,
      pipelining: 1,
      strictContentLength: true,
    };
    this.#bounds = Object.freeze({
      now,
      queueTimeoutMs: Math.max(limits.upstreamConnectTimeoutMs, limits.upstreamResponseTimeoutMs),
      responseTimeoutMs: limits.upstreamResponseTimeoutMs,
      clientIdleTimeoutMs: limits.idleTimeoutMs,
    });
  }

  /**
   * Sends one attempt of `ex` to `member`; the member's in-flight count covers exactly this attempt.
   * Hot path: one handler object per attempt, no promises.
   */
  forward(ex: ForwardExchange, member: Upstream): void {
    const handler = new ForwardHandler(ex, member, this.#bounds);
    const res = ex.res as ForwardedResponse;
    if (res[kHandler] === undefined) {
      // First attempt: listeners live as long as the response; they find the current attempt through res.
      res.on('drain', onClientDrain);
      res.on('close', onClientClose);
    }
    res[kHandler] = handler;
    member.inFlight++;
    member.requests++;
    const pool = this.#pool(member);
    if (pool === undefined) {
      handler.onResponseError(undefined, new MemberDroppedError(member));
      return;
    }
    pool.dispatch(
      { path: ex.path, method: ex.method, headers: ex.headers, body: ex.hasBody ? ex.body : null, idempotent: false },
      handler,
    );
  }

  /** Closes the pools of members no route uses any more; requests already on them finish first. */
  closeMembers(dropped: readonly Upstream[]): void {
    for (const member of dropped) {
      this.#dropped.add(member);
      const pool = this.#pools.get(member);
      if (pool === undefined) continue;
      this.#pools.delete(member);
      pool.close().catch((err: unknown) => this.#log.warn({ err, member: member.address }, 'closing member pool failed'));
    }
  }

  /** Destroys every pool (requests still running are aborted); idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((pool) => pool.destroy()));
  }

  #pool(member: Upstream): Pool | undefined {
    const known = this.#pools.get(member);
    if (known !== undefined) return known;
    if (this.#closed || this.#dropped.has(member)) return undefined;
    const pool = new Pool(`http://${member.address}`, this.#options);
    // Pools report connection problems through request errors; these events are only for visibility.
    pool.on('connectionError', (_origin, _targets, err) => this.#log.debug({ err, member: member.address }, 'member connection failed'));
    this.#pools.set(member, pool);
    return pool;
  }
}

/** One attempt: relays the member's response to the client and reports how it ended, exactly once. */
class ForwardHandler implements Dispatcher.DispatchHandler {
  readonly #ex: ForwardExchange;
  readonly #member: Upstream;
  readonly #bounds: AttemptBounds;
  #controller: Dispatcher.DispatchController | undefined;
  readonly #started: number;
  /** Runs until the request is on a member connection (see Forwarder's queue timeout). */
  readonly #queued: NodeJS.Timeout;
  /** When the request went onto a member connection: the final-status deadline counts from here. */
  #sentAt = 0;
  /** Informational responses so far. */
  #informational = 0;
  /** Armed by the first 1xx: the final status is due by then (AttemptBounds.responseTimeoutMs). */
  #finalStatusDue: NodeJS.Timeout | undefined;
  /** Armed only while the member's body waits for a client that takes nothing (paused on a full write). */
  #clientStalled: NodeJS.Timeout | undefined;
  #responded = false;
  /** The status relayed to the client, once the head is written. */
  #status = 0;
  #done = false;

  constructor(ex: ForwardExchange, member: Upstream, bounds: AttemptBounds) {
    this.#ex = ex;
    this.#member = member;
    this.#bounds = bounds;
    this.#started = bounds.now();
    this.#queued = setTimeout(onQueueTimeout, bounds.queueTimeoutMs, this, bounds.queueTimeoutMs).unref();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    clearTimeout(this.#queued);
    this.#controller = controller;
    this.#sentAt = this.#bounds.now();
    // The client may have left, or been answered 504, while the request waited in the pool's queue.
    if (this.#ex.clientGone || this.#done) controller.abort(new ClientGoneError());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (this.#done) return;
    if (statusCode < 200) {
      this.#onInformational(controller);
      return;
    }
    if (this.#finalStatusDue !== undefined) clearTimeout(this.#finalStatusDue);
    this.#ex.upstreamMs = this.#bounds.now() - this.#started;
    this.#member.recordSuccess();
    const res = this.#ex.res;
    const raw = Array.isArray(controller.rawHeaders) ? controller.rawHeaders : headersToRaw(headers);
    // The member answers before the client has sent all of its body (a 401 or 413 to an upload): the
    // rest of that body will not be read, so the connection cannot carry another request (RFC 9112 §9.6).
    if (this.#ex.hasBody && !this.#ex.req.complete) closeAfter(res);
    try {
      res.writeHead(statusCode, statusMessage || undefined, filterResponseHeaders(raw));
    } catch (err) {
      // Node refused the member's status line or a header: the member's reply is unusable.
      controller.abort(new BadGatewayError(`member ${this.#member.address} sent a response that cannot be relayed`, { cause: err }));
      return;
    }
    this.#responded = true;
    this.#status = statusCode;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#ex.bytes += chunk.length;
    if (!this.#ex.res.write(chunk)) {
      controller.pause();
      // undici's body timeout sleeps while paused, so nothing else bounds this wait (nginx's send_timeout).
      this.#clientStalled ??= setTimeout(onClientStalled, this.#bounds.clientIdleTimeoutMs, this).unref();
    }
  }

  onResponseEnd(): void {
    const req = this.#ex.req;
    if (this.#ex.hasBody && !req.complete) {
      // Discard what the client still sends while the answer goes out, so that closing the connection
      // after it is less likely to become a reset that destroys the answer in the client's buffers.
      req.unpipe();
      req.resume();
    }
    this.#ex.res.end();
    this.#finish(undefined, false);
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.#done) return;
    if (this.#responded && this.#ex.bytes === 0 && BODYLESS.has(this.#status) && codeOf(err) === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
      // A 304 may carry the Content-Length of the full representation (RFC 9110 §8.6), and never a
      // body; undici counts the missing body as a mismatch, but the answer is whole: relay it.
      this.onResponseEnd();
      return;
    }
    if (this.#responded) {
      // The head is out: cutting the connection is the only way to tell the client the body is incomplete.
      this.#ex.res.destroy();
    }
    // Nothing was written to the member when the request never got a socket (undici calls
    // onRequestStart just before writing), and the body is still unread.
    const nothingSent = this.#controller === undefined && !(this.#ex.body ?? this.#ex.req).readableDidRead;
    if (isConnectFailure(err)) this.#member.recordFailure(this.#bounds.now());
    const code = codeOf(err);
    // A bodiless idempotent request the member closed on before answering (often a keep-alive race)
    // can be sent again as it was (RFC 9110 §9.2.2).
    const replayable = !this.#ex.hasBody && IDEMPOTENT.has(this.#ex.method) && CLOSED_ERRORS.has(code);
    const retryable = !this.#responded && ((nothingSent && RETRYABLE_ERRORS.has(code)) || replayable);
    this.#finish(toGatewayError(err, this.#member), retryable);
  }

  /** No member connection came free in time: answer 504 now; the queued request is dropped when its turn comes. */
  queueTimedOut(timeoutMs: number): void {
    if (this.#done || this.#controller !== undefined) return;
    this.#finish(new UpstreamTimeoutError(`no connection to member ${this.#member.address} free within ${timeoutMs} ms`), false);
  }

  /** The client can take more: let the member's body flow again. */
  resume(): void {
    if (this.#clientStalled !== undefined) {
      clearTimeout(this.#clientStalled);
      this.#clientStalled = undefined;
    }
    if (this.#controller !== undefined && this.#controller.paused) this.#controller.resume();
  }

  /**
   * The client took none of the response for the idle timeout while the member's body waited: cut
   * both, so a client that stops reading cannot hold a member connection. "Took" means made room for
   * what was waiting ('drain'); a response queued behind an earlier one on its connection (pipelining)
   * waits for that one, which is bounded by its own attempt.
   */
  clientStalled(): void {
    if (this.#done || this.#clientStalled === undefined) return;
    if (this.#ex.res.socket === null) {
      this.#clientStalled.refresh();
      return;
    }
    this.#clientStalled = undefined;
    const ms = this.#bounds.clientIdleTimeoutMs;
    this.#controller?.abort(new RequestTimeoutError(`the client took none of the response for ${ms} ms`));
  }

  /**
   * The final status is overdue after informational responses. A request body still going upstream
   * gives the member the full timeout from its end, as undici's own response timeout does.
   */
  finalStatusOverdue(): void {
    if (this.#done || this.#responded) return;
    const body = this.#ex.hasBody ? this.#ex.body : null;
    if (body !== null && !body.readableEnded && !body.destroyed) {
      body.once('end', () => {
        if (this.#done || this.#responded) return;
        this.#finalStatusDue = setTimeout(onFinalStatusOverdue, this.#bounds.responseTimeoutMs, this).unref();
      });
      return;
    }
    const reason = `member ${this.#member.address} sent ${this.#informational} informational (1xx) responses and no final status within ${this.#bounds.responseTimeoutMs} ms`;
    this.#controller?.abort(new UpstreamTimeoutError(reason));
  }

  /** The client closed its connection: give up on the member too, so its connection is not held. */
  clientClosed(): void {
    if (this.#ex.res.writableFinished) return;
    this.#ex.clientGone = true;
    if (!this.#done && this.#controller !== undefined && !this.#controller.aborted) this.#controller.abort(new ClientGoneError());
  }

  /**
   * A 1xx, not relayed (Node answers a client's `Expect: 100-continue` itself): counted, and the
   * first one arms the final-status deadline that later ones do not move.
   */
  #onInformational(controller: Dispatcher.DispatchController): void {
    if (++this.#informational > MAX_INFORMATIONAL) {
      controller.abort(new BadGatewayError(`member ${this.#member.address} sent more than ${MAX_INFORMATIONAL} informational (1xx) responses`));
      return;
    }
    if (this.#finalStatusDue !== undefined) return;
    const left = this.#sentAt + this.#bounds.responseTimeoutMs - this.#bounds.now();
    this.#finalStatusDue = setTimeout(onFinalStatusOverdue, Math.max(0, left), this).unref();
  }

  #finish(err: GatewayError | undefined, retryable: boolean): void {
    clearTimeout(this.#queued);
    if (this.#finalStatusDue !== undefined) clearTimeout(this.#finalStatusDue);
    if (this.#clientStalled !== undefined) clearTimeout(this.#clientStalled);
    this.#done = true;
    this.#member.inFlight--;
    const res = this.#ex.res as ForwardedResponse;
    if (res[kHandler] === this) res[kHandler] = null;
    this.#ex.upstreamDone(this.#member, err, retryable);
  }
}

/** A retry from an older snapshot picked a member whose pool is already closed. */
class MemberDroppedError extends Error {
  readonly code = 'GW_MEMBER_DROPPED';
  constructor(member: Upstream) {
    super(`member ${member.address} is no longer published`);
  }
}

/** Raised into undici to abort an attempt whose client went away. */
class ClientGoneError extends Error {
  readonly code = 'GW_CLIENT_GONE';
  constructor() {
    super('client closed the connection');
  }
}

function headersToRaw(headers: Record<string, string | string[] | undefined>): string[] {
  const raw: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) raw.push(name, v);
    else if (value !== undefined) raw.push(name, value);
  }
  return raw;
}

function onQueueTimeout(handler: ForwardHandler, timeoutMs: number): void {
  handler.queueTimedOut(timeoutMs);
}

function onClientStalled(handler: ForwardHandler): void {
  handler.clientStalled();
}

function onFinalStatusOverdue(handler: ForwardHandler): void {
  handler.finalStatusOverdue();
}

function onClientDrain(this: ForwardedResponse): void {
  this[kHandler]?.resume();
}

function onClientClose(this: ForwardedResponse): void {
  this[kHandler]?.clientClosed();
}
