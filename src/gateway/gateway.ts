import { once } from 'node:events';
import { createServer, ServerResponse } from 'node:http';
import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Limits, ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import type { CertStore } from '../sni/index.js';
import { RetryBudget } from '../upstreams/index.js';
import type { Upstream } from '../upstreams/index.js';
import type { RouteTableRef } from '../vhost/index.js';
import { BadRequestError, HeadersTooLargeError, NotImplementedError, RequestTimeoutError } from './errors.js';
import { ConnectionLimiter } from './connection-limit.js';
import { Forwarder } from './forward.js';
import type { TrafficMetrics } from './metrics.js';
import { Pipeline } from './pipeline.js';
import type { PipelineOptions } from './pipeline.js';
import { lingerThenDestroy, logFailure, writeSocketError } from './respond.js';
import type { Route } from './route.js';
import { hasBody } from './steps.js';
import type { RequestTarget } from './steps.js';
import { acceptTls, presentedOn } from './tls-accept.js';
import { checkServername, httpsRedirect, presentFor } from './tls-steps.js';
import type { Presented } from './tls-steps.js';
import { WebSocketProxy, isWebSocketUpgrade } from './websocket.js';

/** What a gateway runs on; `now` is injectable so tests control ejection back-off. */
export interface GatewayOptions {
  limits: Limits;
  routes: RouteTableRef<Route>;
  log: Logger;
  accessLog: boolean;
  now?: () => number;
  /** Where request counts, upstream times and connection counts go (one registry per process). */
  metrics?: TrafficMetrics;
  /** The certificate store in force (HTTPS, and the 308 redirect for names with their own certificate). */
  certificates?: () => CertStore | undefined;
  /** Redirect plain HTTP to HTTPS for names with a certificate of their own (default true). */
  redirectHttp?: boolean;
  /** ACME HTTP-01: the key authorization for a token while an order waits on it (plain data, so every worker can hold a copy). */
  acmeChallenge?: (token: string) => string | undefined;
}



/**
 * The HTTP data plane of one process: listeners, the request pipeline, WebSocket tunnels, member
 * pools, and a bounded drain on close.
 */
export class Gateway {
  readonly #options: GatewayOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #forwarder: Forwarder;
  readonly #connections: ConnectionLimiter;
  /** Shared by every listener: retries stay a fraction of all traffic. */
  readonly retryBudget: RetryBudget;
  readonly #websockets: WebSocketProxy;
  readonly #servers: Server[] = [];
  readonly #pipelines: Pipeline[] = [];
  #httpsPort: number | undefined;
  /** Raw HTTPS connections still in their TLS handshake. */
  readonly #handshaking = new Set<Socket>();
  /** Sockets of non-WebSocket upgrades, answered outside node:http. */
  readonly #detached = new Set<Duplex>();
  #inFlight = 0;
  #onIdle: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'gateway' });
    this.#now = options.now ?? Date.now;
    this.#forwarder = new Forwarder(options.limits, this.#log, this.#now);
    this.#connections = new ConnectionLimiter(options.limits, this.#log, this.#now);
    options.metrics?.countConnections(this.#connections);
    this.retryBudget = new RetryBudget(options.limits.retryBudgetPercent / 100);
    this.#websockets = new WebSocketProxy(options.limits, this.#log, this.#now, this.retryBudget);
  }

  /** Starts an HTTP listener (`host` '' = every interface) and resolves with the bound port. */
  async listenHttp(address: ListenAddress): Promise<number> {
    const certificates = this.#options.certificates;
    const redirect =
      certificates && this.#options.redirectHttp !== false
        ? (target: RequestTarget) => httpsRedirect(certificates(), this.#httpsPort, target)
        : undefined;
    const pipeline = this.#pipeline('http', { redirect, acmeChallenge: this.#options.acmeChallenge });
    return this.#listen(createServer(this.#serverOptions(), pipeline.handle), pipeline, address, 'http');
  }

  /**
   * Starts the HTTPS listener: TLS 1.2 minimum, the certificate chosen by SNI from the current
   * certificate store (exact, one-label wildcard, default), the default one without SNI.
   * The listening socket is an HTTP server whose connections are first taken through TLS by
   * tls-accept.ts, then handed to HTTP as usual (so header timeouts and draining work alike).
   */
  async listenHttps(address: ListenAddress): Promise<number> {
    const certificates = this.#options.certificates;
    if (!certificates?.()) throw new Error('HTTPS needs a certificate store with a default certificate');
    const pipeline = this.#pipeline('https', {
      checkServername: (socket, hostname) => checkServername(presentedOn(socket) as Presented | undefined, hostname),
    });
    const server = createServer(this.#serverOptions(), pipeline.handle);
    const [httpConnection] = server.listeners('connection') as ((socket: Duplex) => void)[];
    if (!httpConnection) throw new Error('node:http no longer listens for connections itself');
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      // Not yet HTTP's: node:http cannot close these on shutdown, so the gateway does.
      this.#handshaking.add(socket);
      socket.once('close', () => this.#handshaking.delete(socket));
      acceptTls(socket, {
        timeoutMs: this.#options.limits.headersTimeoutMs,
        select: (servername) => {
          const store = certificates();
          if (!store) throw new Error('the certificate store is gone');
          return presentFor(store, servername);
        },
        onSecure: (tls) => {
          this.#handshaking.delete(socket);
          this.#options.metrics?.handshake(true);
          httpConnection.call(server, tls);
        },
        onFailure: (reason, raw) => {
          this.#options.metrics?.handshake(false);
          this.#log.debug({ reason, client: raw.remoteAddress }, 'TLS handshake failed');
        },
      });
    });
    this.#httpsPort = await this.#listen(server, pipeline, address, 'https');
    return this.#httpsPort;
  }

  #serverOptions(): ServerOptions {
    const limits = this.#options.limits;
    return {
      maxHeaderSize: limits.maxHeaderBytes,
      // We answer a missing Host ourselves, with a reason and a log line.
      requireHostHeader: false,
      headersTimeout: limits.headersTimeoutMs,
      // Bodies may stream for a long time; the header timeout and idle timeouts bound the rest.
      requestTimeout: 0,
      keepAliveTimeout: limits.idleTimeoutMs,
      // Node checks header deadlines on this period: a slow client is cut within a quarter of the timeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
      noDelay: true,
    };
  }

  async #listen(server: Server, pipeline: Pipeline, address: ListenAddress, listener: 'http' | 'https'): Promise<number> {
    if (this.#closing) throw new Error('gateway is closed');
    // 0 = no limit: Node would otherwise silently drop headers past its count; checkHead answers 431.
    server.maxHeadersCount = 0;
    server.keepAliveTimeout = this.#options.limits.idleTimeoutMs;
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      try {
        this.#upgrade(req, socket, head, pipeline);
      } catch (err) {
        // A bug must cost one connection, never the process (a throw here is an uncaught exception).
        this.#log.error({ err, method: req.method, url: req.url }, 'upgrade failed');
        socket.destroy();
      }
    });
    server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      const err = new NotImplementedError('CONNECT is not supported');
      logFailure(this.#log, err, { method: req.method, url: req.url });
      writeSocketError(socket, err);
    });
    this.#servers.push(server);
    this.#connections.guard(server, listener); // after every other 'connection' listener is attached
    server.listen({ host: address.host === '' ? undefined : address.host, port: address.port });
    await once(server, 'listening');
    server.on('error', (err) => this.#log.error({ err, listener }, 'listener error'));
    return (server.address() as AddressInfo).port;
  }

  /** Closes the keep-alive pools of members no route uses any more (DataPlane's `onMembersDropped`). */
  closeMembers(dropped: Upstream[]): void {
    this.#forwarder.closeMembers(dropped);
  }

  /** Requests started and not yet answered in full (WebSocket tunnels not included). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Stops accepting, closes idle keep-alive connections at once, lets in-flight requests finish for
   * up to `drainTimeoutMs`, then cuts what is left and closes member pools and tunnels. Idempotent.
   */
  close(drainTimeoutMs: number): Promise<void> {
    this.#closing ??= this.#close(drainTimeoutMs);
    return this.#closing;
  }

  async #close(drainTimeoutMs: number): Promise<void> {
    for (const pipeline of this.#pipelines) pipeline.setClosing();
    const closed = this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const server of this.#servers) server.closeIdleConnections();
    for (const socket of this.#handshaking) socket.destroy();
    if (this.#inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#onIdle = resolve;
        timer = setTimeout(resolve, drainTimeoutMs);
        timer.unref();
      });
      clearTimeout(timer);
      this.#onIdle = undefined;
    }
    for (const server of this.#servers) server.closeAllConnections();
    for (const socket of this.#detached) socket.destroy();
    this.#websockets.close();
    await Promise.all(closed);
    await this.#forwarder.close();
    this.#log.info({ inFlight: this.#inFlight }, 'gateway closed');
  }

  #pipeline(proto: 'http' | 'https', steps: Pick<PipelineOptions, 'redirect' | 'checkServername' | 'acmeChallenge'>): Pipeline {
    const pipeline = new Pipeline({
      ...steps,
      routes: this.#options.routes,
      limits: this.#options.limits,
      log: this.#log,
      accessLog: this.#options.accessLog,
      now: this.#now,
      proto,
      forwarder: this.#forwarder,
      retryBudget: this.retryBudget,
      metrics: this.#options.metrics,
      tracker: {
        started: () => {
          this.#inFlight++;
        },
        ended: () => {
          if (--this.#inFlight === 0) this.#onIdle?.();
        },
      },
    });
    this.#pipelines.push(pipeline);
    return pipeline;
  }

  /** Parser errors and header timeouts: answer 400/408/431 on the raw socket unless a response is already under way. */
  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    const current = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'HPE_CLOSED_CONNECTION' && current != null && !current.writableFinished) {
      // Bytes after a request that asked to close: not processed (RFC 9112 §9.6), and the answer
      // still owed goes out whole before node:http closes the connection.
      return;
    }
    if (current?.headersSent) {
      socket.destroy();
      return;
    }
    const gatewayError =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new HeadersTooLargeError(`request header block over ${this.#options.limits.maxHeaderBytes} bytes`, { cause: err })
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new RequestTimeoutError('request headers not received in time', { cause: err })
          : new BadRequestError(`malformed request: ${(err as { reason?: string }).reason ?? err.message} (${err.code ?? 'parse error'})`, { cause: err });
    const remote = (socket as Socket).remoteAddress;
    logFailure(this.#log, gatewayError, { client: remote });
    writeSocketError(socket, gatewayError);
  }

  /**
   * `upgrade` fires for any `Connection: upgrade` + `Upgrade` request. WebSocket is tunnelled; any
   * other protocol (h2c…) is served as a plain request without the upgrade (RFC 9110 §7.8 lets a
   * server ignore it), on a one-shot response since Node has detached the socket from its parser.
   */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, pipeline: Pipeline): void {
    if (pipeline.answering(socket)) {
      // Pipelined behind a request still being answered: node:http has handed the socket over, but that
      // answer still owns it, and the new protocol's bytes would mix with it. Nothing good can follow.
      this.#log.debug({ method: req.method, url: req.url, upgrade: req.headers.upgrade }, 'upgrade pipelined behind an unanswered request: connection closed');
      socket.destroy();
      return;
    }
    if (isWebSocketUpgrade(req)) {
      this.#websockets.handle(req, socket, head, pipeline);
      return;
    }
    socket.on('error', () => socket.destroy());
    if (hasBody(req)) {
      // The body would arrive on the detached socket, not through req: refuse rather than hang.
      const err = new NotImplementedError(`Upgrade: ${req.headers.upgrade ?? ''} with a request body is not supported`);
      logFailure(this.#log, err, { method: req.method, url: req.url });
      writeSocketError(socket, err);
      return;
    }
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    // The socket's 'close' still reaches res (assignSocket listens), so the request is counted out.
    // Detached from node:http, so its shutdown cannot reach it: the gateway closes it, and lingers.
    this.#detached.add(socket);
    socket.once('close', () => this.#detached.delete(socket));
    res.on('finish', () => {
      socket.end();
      lingerThenDestroy(socket);
    });
    pipeline.handle(req, res);
  }
}
