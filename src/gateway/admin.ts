import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { gatewayHops } from './steps.js';

/** What the admin listener reports; supplied by the composition root, so admin imports no other folder. */
export interface AdminSources {
  /** True once every listener is bound and the state is loaded. */
  ready(): boolean;
  /** Plain JSON-able status: sessions, routes, clusters, members (gathered from worker processes, hence async). */
  status(): Promise<unknown>;
  /** The Prometheus text exposition and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
}

/**
 * The operator's listener (`--admin`, loopback by default): `GET /healthz` (the process is alive),
 * `GET /readyz` (listeners bound, state loaded), `GET /status` (JSON), `GET /metrics` (Prometheus
 * text) and `GET /` (the dashboard page, which polls `/status`).
 */
export class AdminServer {
  readonly #server: Server;
  readonly #sources: AdminSources;
  readonly #log: Logger;
  #closed: Promise<void> | undefined;

  constructor(sources: AdminSources, log: Logger) {
    this.#sources = sources;
    this.#log = log;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err, url: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
        else res.destroy();
      });
    });
    this.#server.on('clientError', (_err, socket) => socket.destroy());
    this.#server.on('error', (err) => this.#log.error({ err }, 'admin listener error'));
  }

  /** Binds and resolves with `host:port` as bound. */
  async listen(address: ListenAddress): Promise<string> {
    this.#server.listen(address.port, address.host || undefined);
    await once(this.#server, 'listening');
    const bound = this.#server.address() as AddressInfo;
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    return `${host}:${bound.port}`;
  }

  /** Stops the listener and drops its (short-lived) connections. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
    // A session could publish a member pointing here and read /status through the public listeners.
    const via = req.headers.via;
    if (via !== undefined && gatewayHops(via) > 0) {
      return send(res, 403, 'text/plain', 'the admin API answers direct requests only, not ones forwarded by a gateway\n');
    }
    switch (path) {
      case '/':
        res.setHeader('content-security-policy', DASHBOARD_CSP);
        return send(res, 200, 'text/html', DASHBOARD_HTML);
      case '/metrics': {
        const { contentType, text } = await this.#sources.metrics();
        return sendTyped(res, 200, contentType, text);
      }
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case '/readyz':
        return this.#sources.ready() ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', 'starting\n');
      case '/status':
        return send(res, 200, 'application/json', `${JSON.stringify(await this.#sources.status(), null, 2)}\n`);
      default:
        return send(res, 404, 'text/plain', `no such admin page: ${path}\n`);
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  sendTyped(res, status, `${type}; charset=utf-8`, body);
}

function sendTyped(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
