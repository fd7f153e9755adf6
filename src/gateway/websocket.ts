import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Limits } from '../config.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Upstream } from '../upstreams/index.js';
import { BadGatewayError, BadRequestError, UpstreamTimeoutError } from './errors.js';
import { isConnectFailure } from './forward.js';
import type { Pipeline } from './pipeline.js';
import { logFailure, writeSocketError } from './respond.js';
import { clientAddress } from './steps.js';

/**
 * WebSocket upgrades over http-proxy's `ws` path: the only file that imports http-proxy. Its traps
 * are guarded here: one proxy instance with `xfwd` off (we set X-Forwarded-* ourselves, never trusting
 * the client's), an error listener on the proxy and on both sockets, both sockets destroyed when
 * either side closes or fails, a bound on the wait for the member's answer, non-101 answers relayed.
 */

/** One upgrade in progress or one open tunnel. */
interface Tunnel {
  readonly socket: Duplex;
  readonly member: Upstream;
  readonly fqdn: string;
  readonly start: number;
  proxyReq: ClientRequest | undefined;
  upstream: Socket | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The member answered (101 or anything else): from here errors only close the sockets. */
  answered: boolean;
  closed: boolean;
}

/** Proxies WebSocket upgrades to the routed member and tracks open tunnels for shutdown. */
export class WebSocketProxy {
  readonly #proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, prependPath: false });
  readonly #tunnels = new Map<IncomingMessage, Tunnel>();
  readonly #limits: Limits;
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(limits: Limits, log: Logger, now: () => number) {
    this.#limits = limits;
    this.#log = log;
    this.#now = now;
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
      socket,
      member: routed.member,
      fqdn: routed.route.fqdn,
      start: this.#now(),
      proxyReq: undefined,
      upstream: undefined,
      timer: undefined,
      answered: false,
      closed: false,
    };
    this.#tunnels.set(req, tunnel);
    // Least-outstanding counts a tunnel as outstanding for as long as it is open.
    routed.member.inFlight++;
    routed.member.requests++;
    socket.on('close', () => this.#close(req, tunnel));
    tunnel.timer = setTimeout(() => this.#timedOut(req, tunnel), this.#limits.upstreamConnectTimeoutMs + this.#limits.upstreamResponseTimeoutMs);
    tunnel.timer.unref();

    // http-proxy copies req.headers: give it exactly what should go upstream (hop-by-hop removed,
    // X-Forwarded-* ours, Host rewritten), plus the upgrade pair it forwards for WebSocket.
    req.headers = toHeaderObject(routed.headers);
    req.headers.connection = 'upgrade';
    req.headers.upgrade = 'websocket';
    req.url = routed.path;
    const host = routed.member.host.startsWith('[') ? routed.member.host.slice(1, -1) : routed.member.host;
    this.#proxy.ws(req, socket, head, { target: { protocol: 'http:', host, port: routed.member.port } }, (err) => this.#failed(req, tunnel, err));
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

  #attach(proxyReq: ClientRequest, req: IncomingMessage): void {
    const tunnel = this.#tunnels.get(req);
    if (tunnel === undefined) return;
    tunnel.proxyReq = proxyReq;
    proxyReq.on('response', () => this.#answered(tunnel));
    proxyReq.on('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      this.#answered(tunnel);
      tunnel.upstream = upstream;
      upstream.on('error', (err) => this.#log.debug({ err }, 'websocket member socket error'));
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
      this.#log.debug({ fqdn: tunnel.fqdn, member: tunnel.member.address }, 'websocket tunnel open');
    });
  }

  #answered(tunnel: Tunnel): void {
    tunnel.answered = true;
    clearTimeout(tunnel.timer);
    tunnel.member.recordSuccess();
  }

  #failed(req: IncomingMessage, tunnel: Tunnel, err: Error): void {
    if (tunnel.answered || tunnel.closed) {
      tunnel.socket.destroy();
      tunnel.upstream?.destroy();
      return;
    }
    clearTimeout(tunnel.timer);
    tunnel.answered = true;
    if (isConnectFailure(err)) tunnel.member.recordFailure(this.#now());
    const code = (err as { code?: string }).code;
    this.#refuse(req, tunnel.socket, new BadGatewayError(`websocket member ${tunnel.member.address} failed: ${err.message}${code ? ` (${code})` : ''}`, { cause: err }), tunnel);
  }

  #timedOut(req: IncomingMessage, tunnel: Tunnel): void {
    if (tunnel.answered || tunnel.closed) return;
    tunnel.answered = true;
    this.#refuse(req, tunnel.socket, new UpstreamTimeoutError(`websocket member ${tunnel.member.address} did not answer the upgrade in time`), tunnel);
    tunnel.proxyReq?.destroy();
  }

  #close(req: IncomingMessage, tunnel: Tunnel): void {
    if (tunnel.closed) return;
    tunnel.closed = true;
    clearTimeout(tunnel.timer);
    tunnel.member.inFlight--;
    this.#tunnels.delete(req);
    tunnel.upstream?.destroy();
    if (!tunnel.answered) tunnel.proxyReq?.destroy();
  }

  #refuse(req: IncomingMessage, socket: Duplex, err: GatewayError, tunnel?: Tunnel): void {
    logFailure(this.#log, err, { fqdn: tunnel?.fqdn, member: tunnel?.member.address, method: req.method, url: req.url, client: clientAddress(req), upgrade: 'websocket' });
    writeSocketError(socket, err);
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
