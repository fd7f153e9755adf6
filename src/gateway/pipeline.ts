import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Limits } from '../config.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RetryBudget, Upstream } from '../upstreams/index.js';
import type { RouteTableRef } from '../vhost/index.js';
import { watchBody } from './body-limit.js';
import { AllMembersDownError, MembersBusyError, NoMembersError, NoRouteError, PayloadTooLargeError } from './errors.js';
import type { HttpsRedirect, MisdirectedRequestError } from './errors.js';
import type { ForwardExchange, Forwarder } from './forward.js';
import type { TrafficMetrics } from './metrics.js';
import { asGatewayError, closeAfter, closingConnection, logFailure, sendError } from './respond.js';
import type { Route } from './route.js';
import { checkHead, clientAddress, hasBody, resolveTarget, upstreamHeaders } from './steps.js';
import type { RequestTarget } from './steps.js';
import { answerAcmeChallenge } from './tls-steps.js';

/**
 * Counts requests between their start and their response's close, so shutdown can wait for them.
 * A pipelined request starts when Node hands it over, while it still waits behind earlier ones.
 */
export interface RequestTracker {
  started(): void;
  ended(): void;
}

/** What one listener's pipeline runs on. */
export interface PipelineOptions {
  readonly routes: RouteTableRef<Route>;
  readonly limits: Limits;
  readonly log: Logger;
  readonly accessLog: boolean;
  readonly now: () => number;
  /** `X-Forwarded-Proto` of this listener. */
  readonly proto: 'http' | 'https';
  readonly forwarder: Forwarder;
  readonly tracker: RequestTracker;
  /** Bounds retries to a fraction of requests (shared by the gateway's listeners). */
  readonly retryBudget: RetryBudget;
  /** Request counts by status class and route, and upstream response times. */
  readonly metrics?: TrafficMetrics;
  /** Plain HTTP only: a 308 to HTTPS for names with a certificate of their own, or undefined. */
  readonly redirect?: (target: RequestTarget) => HttpsRedirect | undefined;
  /** HTTPS only: 421 when the Host is not covered by the certificate presented for the SNI. */
  readonly checkServername?: (socket: TLSSocket, hostname: string) => MisdirectedRequestError | undefined;
  /** Plain HTTP only: the ACME HTTP-01 key authorization for a token, answered before routing. */
  readonly acmeChallenge?: (token: string) => string | undefined;
}

/** A routed request: where it goes and what is sent there. */
export interface Routed {
  readonly hostname: string;
  readonly path: string;
  readonly route: Route;
  readonly member: Upstream;
  readonly headers: string[];
}

/** A request goes to at most this many members: the first, and one retry. */
const MAX_ATTEMPTS = 2;

/**
 * Requests one connection may have waiting behind the one being forwarded before its socket is
 * paused, so that the parser stops making more (see {@link Lane}).
 */
const MAX_QUEUED_PER_CONNECTION = 8;

/**
 * Requests one connection may have waiting at all. One read of the socket is parsed whole before the
 * pause takes effect, so a client can still make ~1,700 tiny requests wait at once (~3 MB of heap) on
 * each of thousands of connections; past this many the connection is closed. Browsers do not pipeline,
 * and a client that does gets nothing from more than a few requests ahead.
 */
const MAX_WAITING_PER_CONNECTION = 128;

const kExchange = Symbol('tfgate.exchange');
type TrackedResponse = ServerResponse & { [kExchange]?: Exchange };

/**
 * The request path of one listener: head checks → target → route (one read of the route table) →
 * member → forward; a retry on another member when the first could not be connected to; errors
 * answered by respond.ts; one access-log line when the response closes. A client connection has
 * one request on this path at a time; the ones it pipelines wait their turn (see {@link Lane}).
 */
export class Pipeline {
  readonly #o: PipelineOptions;
  /** One per client connection that has sent a request; gone with its socket. */
  readonly #lanes = new WeakMap<Duplex, Lane>();
  #closing = false;

  constructor(options: PipelineOptions) {
    this.#o = options;
  }

  /**
   * The `request` listener. Node emits it for every request it parses, pipelined ones included: a
   * request waits in its connection's lane while an earlier one on the connection is being answered.
   * Hot path: synchronous, one exchange object per request.
   */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const ex = new Exchange(this, req, res, this.#o.now(), clientAddress(req), this.#lane(req.socket));
    (res as TrackedResponse)[kExchange] = ex;
    res.on('close', onResponseClose);
    req.on('error', ignore); // a client reset surfaces through 'close'; an unheard 'error' would crash
    this.#o.tracker.started();
    if (ex.lane.active !== undefined) {
      ex.lane.wait(ex);
      return;
    }
    this.#run(ex);
  };

  /** Answers or forwards `ex`, now the one request of its connection in progress. */
  #run(ex: Exchange): void {
    const { req, res } = ex;
    ex.lane.active = ex;
    if (closingConnection(req)) {
      // Read after a response that closes the connection: its answer could never be sent (RFC 9112 §9.6).
      // The connection's close closes this response too (Lane), which counts it out.
      this.#o.log.debug({ method: req.method, url: req.url, client: ex.client }, 'request after the connection was closing dropped');
      return;
    }
    // The client asked to close (or spoke HTTP/1.0 without keep-alive), or the gateway is shutting down.
    if (this.#closing || !res.shouldKeepAlive) closeAfter(res);
    try {
      if (this.#o.acmeChallenge !== undefined && answerAcmeChallenge(req, res, this.#o.acmeChallenge)) return;
      const routed = this.route(req, ex.client);
      if (routed instanceof GatewayError) {
        this.#fail(ex, routed);
        return;
      }
      ex.routed = routed;
      ex.member = routed.member;
      ex.path = routed.path;
      ex.headers = routed.headers;
      ex.hasBody = hasBody(req);
      if (ex.hasBody) {
        const limits = this.#o.limits;
        // No Content-Length (chunked): count the body as it streams; a known length was checked in route().
        const maxBytes = req.headers['content-length'] === undefined ? limits.maxBodyBytes : 0;
        ex.body = watchBody(req, { maxBytes, idleTimeoutMs: limits.idleTimeoutMs });
      }
      ex.attempts = 1;
      this.#o.retryBudget.request();
      this.#o.forwarder.forward(ex, routed.member);
    } catch (err) {
      // A bug must cost one request a 500, never the process (a throw here is an uncaught exception).
      this.#fail(ex, asGatewayError(err));
    }
  }

  /** Whether a request on `socket`'s connection is being answered now (an upgrade behind it cannot be taken). */
  answering(socket: Duplex): boolean {
    return this.#lanes.get(socket)?.active !== undefined;
  }

  /** The lane of `socket`'s connection, made on its first request. */
  #lane(socket: Duplex): Lane {
    let lane = this.#lanes.get(socket);
    if (lane === undefined) {
      lane = new Lane(socket);
      this.#lanes.set(socket, lane);
    }
    return lane;
  }

  /** The lane's request in progress has closed: run the next one still waiting, if its connection is still there. */
  #next(lane: Lane): void {
    while (lane.active === undefined && !lane.socket.destroyed) {
      const ex = lane.take();
      if (ex === undefined) return;
      if (!ex.closed) this.#run(ex);
    }
  }

  /** Routes a request (plain or upgrade): head checks, hostname, route, member, upstream headers. */
  route(req: IncomingMessage, client: string = clientAddress(req)): Routed | GatewayError {
    const headError = checkHead(req, this.#o.limits.maxHeaderCount);
    if (headError !== undefined) return headError;
    const maxBody = this.#o.limits.maxBodyBytes;
    const length = req.headers['content-length'];
    if (maxBody > 0 && length !== undefined && Number(length) > maxBody) {
      return new PayloadTooLargeError(`request body of ${length} bytes is over the limit of ${maxBody}`);
    }
    const target = resolveTarget(req);
    if (target instanceof GatewayError) return target;
    const refused = this.#o.redirect?.(target) ?? this.#o.checkServername?.(req.socket as TLSSocket, target.hostname);
    if (refused !== undefined) return refused;
    const route = this.#o.routes.current.lookup(target.hostname); // the one read of the table for this request
    if (route === undefined) return new NoRouteError(target.hostname);
    const member = route.cluster.pick(this.#o.now());
    if (member === undefined) return noMemberError(route, this.#o.now());
    const headers = upstreamHeaders(req, route.rewrite ?? target.authority, target.authority, this.#o.proto, client);
    return { hostname: target.hostname, path: target.path, route, member, headers };
  }

  /** From now on responses ask the client to close its connection (shutdown). */
  setClosing(): void {
    this.#closing = true;
  }

  /** One attempt ended (see {@link ForwardExchange.upstreamDone}): retry once, or answer the error. */
  upstreamDone(ex: Exchange, member: Upstream, err: GatewayError | undefined, retryable: boolean): void {
    if (err === undefined) return;
    if (ex.clientGone) {
      ex.error = err;
      return;
    }
    if (ex.res.headersSent) {
      // forward.ts has already cut the connection; the access log line records the failure.
      this.#fail(ex, err);
      return;
    }
    if (retryable && ex.routed !== undefined) {
      const next = ex.routed.route.cluster.pick(this.#o.now(), member);
      if (ex.attempts >= MAX_ATTEMPTS && next !== undefined) {
        // The retry failed too while other members are up: say what happened, not "every member is down".
        this.#fail(ex, err);
        return;
      }
      if (next !== undefined && !this.#o.retryBudget.tryRetry()) {
        this.#o.log.warn({ err, member: member.address, fqdn: ex.routed.route.fqdn }, 'member failed, retry budget spent');
        this.#fail(ex, err);
        return;
      }
      if (next !== undefined) {
        this.#o.log.warn({ err, member: member.address, retry: next.address, fqdn: ex.routed.route.fqdn }, 'member failed, retrying on another');
        ex.attempts++;
        ex.member = next;
        this.#o.forwarder.forward(ex, next);
        return;
      }
      this.#fail(ex, new AllMembersDownError(ex.routed.route.fqdn, { cause: err }));
      return;
    }
    this.#fail(ex, err);
  }

  /**
   * The response closed (finished or cut): count it out, record its metrics and write the access-log
   * line; then the next request waiting on its connection, if any, goes ahead.
   */
  responseClosed(ex: Exchange): void {
    if (ex.closed) return;
    ex.closed = true;
    this.#o.tracker.ended();
    const res = ex.res;
    // 499 (nginx's "client closed request") when the client left before any answer.
    const status = res.headersSent ? res.statusCode : 499;
    this.#o.metrics?.request(ex.routed?.route.fqdn, status, ex.upstreamMs);
    if (this.#o.accessLog) {
      this.#o.log.info(
        {
          fqdn: ex.routed?.route.fqdn,
          method: ex.req.method,
          path: ex.path || ex.req.url,
          status,
          durationMs: this.#o.now() - ex.start,
          member: ex.member?.address,
          bytes: ex.bytes,
          client: ex.client,
          ...(ex.error !== undefined ? { code: ex.error.code } : {}),
          ...(ex.clientGone || !res.writableFinished ? { aborted: true } : {}),
        },
        'request',
      );
    }
    if (ex.lane.active === ex) {
      ex.lane.active = undefined;
      this.#next(ex.lane);
    }
  }

  #fail(ex: Exchange, err: GatewayError): void {
    ex.error = err;
    logFailure(this.#o.log, err, {
      fqdn: ex.routed?.route.fqdn,
      hostname: ex.routed?.hostname,
      method: ex.req.method,
      url: ex.req.url,
      member: ex.member?.address,
      client: ex.client,
    });
    ex.bytes += sendError(ex.res, err);
  }
}

/** Why no member was picked: none at all, all down, or the available ones all at their in-flight cap. Off the hot path. */
function noMemberError(route: Route, now: number): GatewayError {
  const members = route.cluster.members;
  if (members.length === 0) return new NoMembersError(route.fqdn);
  const busy = members.find((member) => member.isAvailable(now));
  return busy !== undefined ? new MembersBusyError(route.fqdn, busy.maxInFlight) : new AllMembersDownError(route.fqdn);
}

/** One request in flight: what forward.ts needs plus what the access log reports. */
class Exchange implements ForwardExchange {
  routed: Routed | undefined;
  member: Upstream | undefined;
  path = '';
  headers: string[] = [];
  hasBody = false;
  body: Readable | null = null;
  clientGone = false;
  bytes = 0;
  upstreamMs: number | undefined;
  attempts = 0;
  error: GatewayError | undefined;
  /** The response has closed and the request was counted out. */
  closed = false;

  constructor(
    readonly pipeline: Pipeline,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly start: number,
    readonly client: string,
    readonly lane: Lane,
  ) {}

  get method(): string {
    return this.req.method ?? 'GET';
  }

  upstreamDone(member: Upstream, err: GatewayError | undefined, retryable: boolean): void {
    this.pipeline.upstreamDone(this, member, err, retryable);
  }
}

/**
 * The requests of one client connection, answered one at a time. HTTP/1.1 sends the answers to
 * pipelined requests in order (RFC 9112 §9.3.2), so forwarding them all at once gains the client
 * nothing it can use, while it lets one connection hold a member connection and an in-flight slot
 * per request it pipelines. So one request is in progress and the others wait here, untouched
 * (not routed, no member picked); while more than {@link MAX_QUEUED_PER_CONNECTION} wait, the
 * socket is paused so the parser stops making requests. Waiting requests are counted in flight
 * from the start, like any other: when the connection goes they are closed, which counts them out
 * (499), and none of them reaches a member. (A client that leaves while its socket is paused has
 * its FIN behind the bytes not read: the gateway learns of it only when writing an answer fails, so
 * the one request started after the last answer written may still reach a member.)
 */
class Lane {
  /** The request in progress: from Pipeline's #run until its response closes. */
  active: Exchange | undefined;
  readonly #waiting: Exchange[] = [];
  #paused = false;

  constructor(readonly socket: Duplex) {
    socket.on('resume', this.#onResume);
    socket.once('close', this.#onClose);
  }

  /** Queues a request behind the one in progress. */
  wait(ex: Exchange): void {
    this.#waiting.push(ex);
    if (this.#waiting.length > MAX_WAITING_PER_CONNECTION) {
      this.socket.destroy(); // its 'close' closes every waiting response (#onClose)
      return;
    }
    if (this.#waiting.length > MAX_QUEUED_PER_CONNECTION && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
  }

  /** The next waiting request, if any; reading resumes once few enough wait. */
  take(): Exchange | undefined {
    const ex = this.#waiting.shift();
    if (this.#paused && this.#waiting.length <= MAX_QUEUED_PER_CONNECTION) {
      this.#paused = false;
      this.socket.resume();
    }
    return ex;
  }

  /** node:http resumes the socket on its own (a response finished, a body is read): not while too many wait. */
  readonly #onResume = (): void => {
    if (this.#paused) this.socket.pause();
  };

  /**
   * The connection is gone. A response Node has given the socket is closed by Node. One it has not
   * (waiting here, or in progress behind an earlier response that closed the connection) never gets
   * a 'close' from Node, which would leave it counted in flight and its member request running: the
   * connection's close closes it.
   */
  readonly #onClose = (): void => {
    const left = this.active === undefined ? this.#waiting.splice(0) : [this.active, ...this.#waiting.splice(0)];
    for (const ex of left) {
      if (ex.res.socket === null && !ex.res.writableFinished) ex.res.emit('close');
    }
  };
}

function onResponseClose(this: TrackedResponse): void {
  const ex = this[kExchange];
  if (ex !== undefined) ex.pipeline.responseClosed(ex);
}

function ignore(): void {}
