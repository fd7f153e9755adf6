import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
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

/** Counts requests between their start and their response's close, so shutdown can wait for them. */
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

const kExchange = Symbol('tfgate.exchange');
type TrackedResponse = ServerResponse & { [kExchange]?: Exchange };

/**
 * The request path of one listener: head checks → target → route (one read of the route table) →
 * member → forward; a retry on another member when the first could not be connected to; errors
 * answered by respond.ts; one access-log line when the response closes.
 */
export class Pipeline {
  readonly #o: PipelineOptions;
  #closing = false;

  constructor(options: PipelineOptions) {
    this.#o = options;
  }

  /** The `request` listener. Hot path: synchronous, one exchange object per request. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const ex = new Exchange(this, req, res, this.#o.now(), clientAddress(req));
    (res as TrackedResponse)[kExchange] = ex;
    res.on('close', onResponseClose);
    if (res.socket === null) closeWithConnection(req, res);
    req.on('error', ignore); // a client reset surfaces through 'close'; an unheard 'error' would crash
    this.#o.tracker.started();
    if (closingConnection(req)) {
      // Read after a response that closes the connection: its answer could never be sent (RFC 9112 §9.6).
      // The connection's close closes this response too (closeWithConnection), which counts it out.
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
  };

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

  /** The response closed (finished or cut): count it out, record its metrics and write the access-log line. */
  responseClosed(ex: Exchange): void {
    this.#o.tracker.ended();
    const res = ex.res;
    // 499 (nginx's "client closed request") when the client left before any answer.
    const status = res.headersSent ? res.statusCode : 499;
    this.#o.metrics?.request(ex.routed?.route.fqdn, status, ex.upstreamMs);
    if (!this.#o.accessLog) return;
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

  constructor(
    readonly pipeline: Pipeline,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly start: number,
    readonly client: string,
  ) {}

  get method(): string {
    return this.req.method ?? 'GET';
  }

  upstreamDone(member: Upstream, err: GatewayError | undefined, retryable: boolean): void {
    this.pipeline.upstreamDone(this, member, err, retryable);
  }
}

function onResponseClose(this: TrackedResponse): void {
  const ex = this[kExchange];
  if (ex !== undefined) ex.pipeline.responseClosed(ex);
}

/**
 * A pipelined request's response waits for the ones before it and has no socket yet; Node never
 * emits its 'close' if the connection goes first (an earlier response closed it, or the client
 * left), which would leave the request counted in flight and its member request running. So the
 * connection's 'close' closes it too.
 */
function closeWithConnection(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  const onSocketClose = (): void => {
    if (res.socket === null && !res.writableFinished) res.emit('close');
  };
  socket.once('close', onSocketClose);
  res.once('close', () => socket.off('close', onSocketClose));
}

function ignore(): void {}
