import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { isIPv4, isIPv6 } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config.js';
import { parseHostname } from '../hostname.js';
import type { Logger } from '../log.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { DEFAULT_STATUS_LIMIT, MAX_STATUS_LIMIT } from './status.js';
import type { StatusQuery, StatusSnapshot } from './status.js';
import { gatewayHops } from './steps.js';

/** What the admin listener reports; supplied by the composition root, so admin imports no other folder. */
export interface AdminSources {
  /** True once every listener is bound and the state is loaded. */
  ready(): boolean;
  /** The status of this moment (gathered from worker processes, hence async); `/status` lists a page of its routes. */
  status(): Promise<StatusSnapshot>;
  /** The Prometheus text exposition and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
}

/** The addresses a Host may name besides `localhost` and the loopback literals (see {@link adminHostAllowed}). */
export interface AdminAddresses {
  /** The host the listener was asked to bind (`--admin HOST:PORT`), normalised; null when none was given. */
  readonly configured: string | null;
  /** The address it is bound to, as a Host names it (`10.0.0.5`, `[fd00::2]`). */
  readonly bound: string | null;
  /** The address this connection reached, as a Host names it (tells which one a wildcard bind was reached on). */
  readonly local: string | null;
  /** Names the operator allowed besides these (`--admin-host`), normalised. */
  readonly extra?: readonly string[];
}

/**
 * Whether a request whose Host is `host` may be answered: only when it names the admin listener in
 * a way no other site can, so a DNS-rebinding page (a name of the attacker's re-pointed at this
 * address) is refused, its Host being that name. Allowed: no Host at all (HTTP/1.0; browsers always
 * send one), `localhost`, a loopback literal (127.0.0.0/8, [::1]), the host the listener was bound
 * to, the address the connection reached — an IP literal as Host can only be a page served from
 * that address itself — and the names the operator gave with `--admin-host` (the DNS name a
 * Prometheus scrapes it by). Any port is accepted (a port forward may change it).
 */
export function adminHostAllowed(host: string | undefined, addresses: AdminAddresses): boolean {
  if (host === undefined) return true;
  const parsed = parseHostname(host);
  if (!parsed.ok) return false;
  const name = parsed.hostname;
  return (
    name === 'localhost' ||
    name === '[::1]' ||
    (name.startsWith('127.') && isIPv4(name)) ||
    name === addresses.configured ||
    name === addresses.bound ||
    name === addresses.local ||
    (addresses.extra?.includes(name) ?? false)
  );
}

/**
 * The operator's listener (`--admin`, loopback by default): `GET /healthz` (the process is alive),
 * `GET /readyz` (listeners bound, state loaded), `GET /status` (JSON), `GET /metrics` (Prometheus
 * text) and `GET /` (the dashboard page, which polls `/status`). Every answer is refused with 421
 * unless the Host names this listener ({@link adminHostAllowed}).
 */
export class AdminServer {
  readonly #server: Server;
  readonly #sources: AdminSources;
  readonly #log: Logger;
  #configured: string | null = null;
  #bound: string | null = null;
  readonly #extraHosts: readonly string[];
  #closed: Promise<void> | undefined;

  constructor(sources: AdminSources, log: Logger, extraHosts: readonly string[] = []) {
    this.#extraHosts = extraHosts;
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
    this.#configured = hostOf(address.host);
    this.#bound = hostOf(bound.address);
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
    const target = req.url ?? '/';
    const queryAt = target.indexOf('?');
    const path = queryAt === -1 ? target : target.slice(0, queryAt);
    // A session could publish a member pointing here and read /status through the public listeners.
    const via = req.headers.via;
    if (via !== undefined && gatewayHops(via) > 0) {
      return send(res, 403, 'text/plain', 'the admin API answers direct requests only, not ones forwarded by a gateway\n');
    }
    // DNS rebinding: a page of the attacker's whose name now resolves here would read /status and
    // /metrics as same-origin. Its requests carry that name as Host. 421 rather than 403: this
    // listener is not the server for that name (RFC 9110 §15.5.20); no credential would change that.
    const host = req.headers.host;
    if (!adminHostAllowed(host, { configured: this.#configured, bound: this.#bound, local: hostOf(req.socket.localAddress), extra: this.#extraHosts })) {
      return send(
        res,
        421,
        'text/plain',
        `the admin listener answers only to Host localhost, a loopback address, its own address or a name given with --admin-host, not ${JSON.stringify((host ?? '').slice(0, 100))}\n`,
      );
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
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
      case '/status': {
        const query = parseStatusQuery(new URLSearchParams(queryAt === -1 ? '' : target.slice(queryAt + 1)));
        if (typeof query === 'string') return send(res, 400, 'text/plain', `${query}\n`);
        const snapshot = await this.#sources.status();
        return send(res, 200, 'application/json', `${JSON.stringify(snapshot.document(query), null, 2)}\n`);
      }
      default:
        return send(res, 404, 'text/plain', `no such admin page: ${path}\n`);
    }
  }
}

/**
 * `/status?limit=N&q=TEXT&fqdn=NAME` as a {@link StatusQuery}, or the reason it is not one. Other
 * parameters are ignored (a cache-buster, say).
 */
export function parseStatusQuery(params: URLSearchParams): StatusQuery | string {
  let limit = DEFAULT_STATUS_LIMIT;
  const rawLimit = params.get('limit');
  if (rawLimit !== null) {
    if (!/^[0-9]{1,6}$/.test(rawLimit) || Number(rawLimit) > MAX_STATUS_LIMIT) return `limit must be a whole number from 0 to ${MAX_STATUS_LIMIT}, not ${JSON.stringify(rawLimit.slice(0, 20))}`;
    limit = Number(rawLimit);
  }
  const q = params.get('q');
  if (q !== null && q.length > 253) return 'q must be at most 253 characters';
  const rawFqdn = params.get('fqdn');
  let fqdn: string | null = null;
  if (rawFqdn !== null && rawFqdn !== '') {
    const parsed = parseHostname(rawFqdn, { allowPort: false, allowWildcard: true });
    if (!parsed.ok) return `fqdn ${JSON.stringify(rawFqdn.slice(0, 100))} is not a name: ${parsed.reason}`;
    fqdn = parsed.hostname;
  }
  return { limit, q: q === null || q === '' ? null : q, fqdn };
}

/**
 * An address or name as a Host header names it (IPv4 and names normalised, an IPv4-mapped IPv6
 * address as IPv4, IPv6 bracketed), or null for none or a wildcard (no client reaches `0.0.0.0`).
 */
function hostOf(address: string | undefined): string | null {
  if (address === undefined || address === '' || address === '0.0.0.0' || address === '::') return null;
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  const parsed = parseHostname(isIPv6(address) ? `[${address}]` : address, { allowPort: false });
  return parsed.ok ? parsed.hostname : null;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  sendTyped(res, status, `${type}; charset=utf-8`, body);
}

function sendTyped(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    // A page elsewhere that loads /status or /metrics as a script or style gets nothing it can run.
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}
