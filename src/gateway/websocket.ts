import { Agent } from 'node:http';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Limits } from '../config.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { refusedMemberIp, unbracket } from '../upstreams/index.js';
import type { RetryBudget, Upstream } from '../upstreams/index.js';
import { AllMembersDownError, BadRequestError } from './errors.js';
import { ConnectTimeoutError, MemberAddressRefusedError, ResponseTimeoutError, isConnectFailure, toGatewayError } from './member-errors.js';
import type { Pipeline } from './pipeline.js';
import { logFailure, writeSocketError } from './respond.js';
import type { Route } from './route.js';
import { clientAddress, filterResponseHeaders } from './steps.js';

/**
 * WebSocket upgrades: the only file that imports http-proxy. This file opens the member connection
 * itself (bounded by the connect timeout; a refused connection ejects the member and the upgrade is
 * retried once on another, as forward.ts does for plain requests, since nothing was sent) and hands
 * it to http-proxy's `ws` path, which sends the upgrade request and pipes the tunnel. Failures map
 * through member-errors.ts like plain requests: 504 when the member sends no answer within the
 * response timeout, 502 with the reason otherwise. http-proxy's traps are guarded here: one proxy
 * instance with `xfwd` off (we set X-Forwarded-* ourselves, never trusting the client's), an error
 * listener on the proxy and on both sockets, both sockets destroyed when either side closes or fails,
 * non-101 answers relayed with their hop-by-hop headers replaced by `Connection: close`. An open
 * tunnel with no traffic either way for the tunnel idle timeout is closed (http-proxy sets none).
 */

/** An upgrade goes to at most this many members: the first, and one retry (as pipeline.ts). */
const MAX_ATTEMPTS = 2;

/**
 * Where an upgrade is: connecting to a member, waiting for its answer to the upgrade request,
 * answered by the member (101 or anything else: from here errors only close the sockets), or
 * refused by the gateway (an error answer is on its way to the client).
 */
type TunnelState = 'connecting' | 'waiting' | 'answered' | 'refused';

/** One upgrade in progress or one open tunnel. */
interface Tunnel {
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly route: Route;
  /** The member of the current attempt. */
  member: Upstream;
  attempts: number;
  /** The current attempt counts in `member.inFlight` (released once, when the attempt or the tunnel ends). */
  holding: boolean;
  state: TunnelState;
  /** The connection to the member of the current attempt; after a 101, the member side of the tunnel. */
  upstream: Socket | undefined;
  proxyReq: ClientRequest | undefined;
  timer: NodeJS.Timeout | undefined;
  closed: boolean;
}

/** Proxies WebSocket upgrades to the routed member and tracks open tunnels for shutdown. */
export class WebSocketProxy {
  readonly #proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, prependPath: false });
  readonly #tunnels = new Map<IncomingMessage, Tunnel>();
  readonly #limits: Limits;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #retryBudget: RetryBudget;

  /** `retryBudget` is the one plain requests spend too: retries stay a fraction of all traffic. */
  constructor(limits: Limits, log: Logger, now: () => number, retryBudget: RetryBudget) {
    this.#limits = limits;
    this.#log = log;
    this.#now = now;
    this.#retryBudget = retryBudget;
    // Errors of our ws() calls go to their callback; this catches anything else rather than crash.
    this.#proxy.on('error', (err) => this.#log.error({ err }, 'websocket proxy error'));
    this.#proxy.on('proxyReqWs', (proxyReq, req) => this.#attach(proxyReq, req));
  }

  /** Open tunnels and pending upgrades. */
  get size(): number {
    return this.#tunnels.size;
  }

  /**
   * The server's `upgrade` listener for a request already known to ask for `Upgrade: websocket`:
   * routes it with the listener's pipeline and opens the tunnel, or answers the error on the socket.
   */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, pipeline: Pipeline): void {
    socket.on('error', (err) => this.#log.debug({ err }, 'websocket client socket error'));
    if (req.method !== 'GET') return this.#refuse(req, socket, new BadRequestError('a WebSocket upgrade must be a GET'));
    const routed = pipeline.route(req);
    if (routed instanceof GatewayError) return this.#refuse(req, socket, routed);

    const tunnel: Tunnel = {
      req,
      socket,
      head,
      route: routed.route,
      member: routed.member,
      attempts: 0,
      holding: false,
      state: 'connecting',
      upstream: undefined,
      proxyReq: undefined,
      timer: undefined,
      closed: false,
    };
    this.#tunnels.set(req, tunnel);
    socket.on('close', () => this.#close(tunnel));

    // http-proxy copies req.headers: give it exactly what should go upstream (hop-by-hop removed,
    // X-Forwarded-* ours, Host rewritten), plus the upgrade pair it forwards for WebSocket.
    req.headers = toHeaderObject(routed.headers);
    req.headers.connection = 'upgrade';
    req.headers.upgrade = 'websocket';
    req.url = routed.path;
    this.#retryBudget.request();
    this.#connect(tunnel);
  }

  /** Destroys every tunnel (shutdown: the HTTP requests have drained or their time is up). */
  close(): void {
    for (const tunnel of this.#tunnels.values()) {
      tunnel.socket.destroy();
      tunnel.upstream?.destroy();
      tunnel.proxyReq?.destroy();
    }
    this.#proxy.close();
  }

  /** Starts an attempt: connects to `tunnel.member`, bounded by the connect timeout. */
  #connect(tunnel: Tunnel): void {
    const member = tunnel.member;
    tunnel.attempts++;
    tunnel.state = 'connecting';
    // Least-outstanding counts a tunnel as outstanding for as long as it is open.
    tunnel.holding = true;
    member.inFlight++;
    member.requests++;
    const upstream = connect({ host: unbracket(member.host), port: member.port });
    tunnel.upstream = upstream;
    upstream.on('error', (err) => this.#upstreamError(tunnel, upstream, err));
    upstream.once('connect', () => this.#connected(tunnel, upstream));
    const timeoutMs = this.#limits.upstreamConnectTimeoutMs;
    tunnel.timer = setTimeout(() => upstream.destroy(new ConnectTimeoutError(timeoutMs)), timeoutMs);
    tunnel.timer.unref();
  }

  /** Connected: http-proxy sends the upgrade request on this connection; the member has the response timeout to answer. */
  #connected(tunnel: Tunnel, upstream: Socket): void {
    const refused = refusedMemberIp(upstream.remoteAddress ?? '');
    if (refused !== undefined) {
      // Still 'connecting' for #upstreamError: a refused address fails like a connect failure.
      upstream.destroy(new MemberAddressRefusedError(`${tunnel.member.host} resolved to ${refused}`));
      return;
    }
    clearTimeout(tunnel.timer);
    tunnel.state = 'waiting';
    const timeoutMs = this.#limits.upstreamResponseTimeoutMs;
    tunnel.timer = setTimeout(() => this.#timedOut(tunnel, timeoutMs), timeoutMs);
    tunnel.timer.unref();
    const member = tunnel.member;
    const target = { protocol: 'http:', host: unbracket(member.host), port: member.port };
    this.#proxy.ws(tunnel.req, tunnel.socket, tunnel.head, { target, agent: new ConnectedAgent(upstream) }, (err) => this.#failed(tunnel, err));
  }

  /**
   * An error on a member connection. While connecting, the attempt failed and nothing was sent:
   * a connect failure ejects the member, and another member may take the upgrade. Once connected,
   * the upgrade request (or the tunnel) reports it through http-proxy's callback, {@link #failed}.
   */
  #upstreamError(tunnel: Tunnel, upstream: Socket, err: Error): void {
    if (tunnel.upstream !== upstream || tunnel.state !== 'connecting' || tunnel.closed) {
      this.#log.debug({ err, member: tunnel.member.address }, 'websocket member socket error');
      return;
    }
    clearTimeout(tunnel.timer);
    const member = tunnel.member;
    this.#release(tunnel);
    tunnel.upstream = undefined;
    const failure = toGatewayError(err, member);
    if (!isConnectFailure(err)) return this.#refuseTunnel(tunnel, failure);
    member.recordFailure(this.#now());
    const next = tunnel.route.cluster.pick(this.#now(), member);
    if (next === undefined) return this.#refuseTunnel(tunnel, new AllMembersDownError(tunnel.route.fqdn, { cause: failure }));
    // The retry failed too while other members are up: say what happened, not "every member is down".
    if (tunnel.attempts >= MAX_ATTEMPTS) return this.#refuseTunnel(tunnel, failure);
    if (!this.#retryBudget.tryRetry()) {
      this.#log.warn({ err: failure, member: member.address, fqdn: tunnel.route.fqdn, upgrade: 'websocket' }, 'member failed, retry budget spent');
      return this.#refuseTunnel(tunnel, failure);
    }
    this.#log.warn({ err: failure, member: member.address, retry: next.address, fqdn: tunnel.route.fqdn, upgrade: 'websocket' }, 'member failed, retrying on another');
    tunnel.member = next;
    this.#connect(tunnel);
  }

  #attach(proxyReq: ClientRequest, req: IncomingMessage): void {
    const tunnel = this.#tunnels.get(req);
    if (tunnel === undefined) return;
    tunnel.proxyReq = proxyReq;
    // Registered before http-proxy's own 'response' listener, which writes res.headers to the client
    // and pipes the decoded body after them: the framing must be one the decoded body matches.
    proxyReq.on('response', (res: IncomingMessage) => {
      this.#answered(tunnel);
      res.headers = { ...toHeaderObject(filterResponseHeaders(res.rawHeaders)), connection: 'close' };
    });
    proxyReq.on('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      this.#answered(tunnel);
      tunnel.upstream = upstream;
      // Either side gone → both gone. http-proxy's pipes only pass a FIN on, and the upgraded sockets
      // allow half-open connections, so without this a client that leaves keeps the member's socket open.
      const destroyBoth = (): void => {
        tunnel.socket.destroy();
        upstream.destroy();
      };
      upstream.on('close', destroyBoth);
      upstream.on('end', destroyBoth);
      tunnel.socket.on('end', destroyBoth);
      if (tunnel.closed || tunnel.socket.readableEnded) destroyBoth();
      else this.#watchIdle(tunnel, destroyBoth);
      this.#log.debug({ fqdn: tunnel.route.fqdn, member: tunnel.member.address }, 'websocket tunnel open');
    });
  }

  /**
   * Closes the open tunnel after the tunnel idle timeout without traffic. Every byte of the tunnel,
   * either way, is read or written on the client socket, so that socket's own inactivity timeout
   * is the tunnel's (http-proxy set it to 0 before the upgrade; nothing sets it after this).
   */
  #watchIdle(tunnel: Tunnel, destroyBoth: () => void): void {
    const idleMs = this.#limits.tunnelIdleTimeoutMs;
    if (idleMs === 0) return;
    const socket = tunnel.socket as Socket;
    socket.setTimeout(idleMs);
    socket.once('timeout', () => {
      this.#log.debug({ fqdn: tunnel.route.fqdn, member: tunnel.member.address, idleMs }, 'websocket tunnel idle, closed');
      destroyBoth();
    });
  }

  #answered(tunnel: Tunnel): void {
    tunnel.state = 'answered';
    clearTimeout(tunnel.timer);
    tunnel.member.recordSuccess();
  }

  /** http-proxy's callback: the upgrade request or the open tunnel failed. */
  #failed(tunnel: Tunnel, err: Error): void {
    if (tunnel.state === 'refused') {
      // Our error answer is on its way (a timeout destroyed the request): leave the client socket to it.
      tunnel.upstream?.destroy();
      return;
    }
    if (tunnel.state === 'answered' || tunnel.closed) {
      tunnel.socket.destroy();
      tunnel.upstream?.destroy();
      return;
    }
    // The upgrade request was sent: no retry. A reset is not the member's fault alone (no ejection), as in forward.ts.
    clearTimeout(tunnel.timer);
    this.#refuseTunnel(tunnel, toGatewayError(err, tunnel.member));
    tunnel.upstream?.destroy();
  }

  #timedOut(tunnel: Tunnel, timeoutMs: number): void {
    if (tunnel.state !== 'waiting' || tunnel.closed) return;
    this.#refuseTunnel(tunnel, toGatewayError(new ResponseTimeoutError(timeoutMs), tunnel.member));
    // Closes the member connection too; http-proxy then reports a hang-up to #failed, which leaves the answer be.
    tunnel.proxyReq?.destroy();
    tunnel.upstream?.destroy();
  }

  #close(tunnel: Tunnel): void {
    if (tunnel.closed) return;
    tunnel.closed = true;
    clearTimeout(tunnel.timer);
    this.#release(tunnel);
    this.#tunnels.delete(tunnel.req);
    tunnel.upstream?.destroy();
    if (tunnel.state !== 'answered') tunnel.proxyReq?.destroy();
  }

  /** Ends the current attempt's share of its member's in-flight count, once. */
  #release(tunnel: Tunnel): void {
    if (!tunnel.holding) return;
    tunnel.holding = false;
    tunnel.member.inFlight--;
  }

  #refuseTunnel(tunnel: Tunnel, err: GatewayError): void {
    tunnel.state = 'refused';
    this.#refuse(tunnel.req, tunnel.socket, err, tunnel);
  }

  #refuse(req: IncomingMessage, socket: Duplex, err: GatewayError, tunnel?: Tunnel): void {
    logFailure(this.#log, err, { fqdn: tunnel?.route.fqdn, member: tunnel?.member.address, method: req.method, url: req.url, client: clientAddress(req), upgrade: 'websocket' });
    writeSocketError(socket, err);
  }
}

/**
 * Gives http-proxy's upgrade request the member connection this file opened, so connect failures
 * and the connect timeout are handled here (http-proxy would end the client socket on any error,
 * leaving nothing to retry with). One per upgrade; never keeps a socket.
 */
class ConnectedAgent extends Agent {
  readonly #socket: Socket;

  constructor(socket: Socket) {
    super({ keepAlive: false });
    this.#socket = socket;
  }

  override createConnection(): Socket {
    return this.#socket;
  }
}

/** True when an `upgrade` event asks for a WebSocket (only those are tunnelled). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return upgrade !== undefined && upgrade.toLowerCase() === 'websocket';
}

function toHeaderObject(flat: readonly string[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const value = flat[i + 1]!;
    const known = headers[name];
    headers[name] = known === undefined ? value : Array.isArray(known) ? [...known, value] : [known, value];
  }
  return headers;
}
