import { mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Config, ListenAddress } from './config.js';
import { GatewayError } from './errors.js';
import type { Logger } from './log.js';
import { ControlPlane, RoutingStateBuilder } from './control/index.js';
import { AdminServer, CertificateCatalog, StateMetrics, LocalPlane, TicketKeyRotation, WorkerPool, aggregateMetrics, buildStatus } from './gateway/index.js';
import type { PlaneHost } from './gateway/index.js';
import { ensureDefaultCertificate, loadOperatorCertificates } from './sni/index.js';
import { startCertManager } from './sni/index.js';
import type { CertManager, PublishedName } from './sni/index.js';
import type { StoredCertificate } from './sni/index.js';
import { parseRoutesFile, RoutesFileError } from './vhost/index.js';
import type { CertificateSpec, RouteSpec } from './vhost/index.js';
import type { RoutingState } from './vhost/index.js';

/** A running gateway: the bound addresses, and the operator's levers. */
export interface RunningServer {
  readonly http: number;
  readonly https: number;
  readonly control: number;
  readonly admin: string;
  readonly publicKey: string;
  /**
   * Re-reads the static routes file and the operator's certificates (SIGHUP); an invalid routes file
   * is refused with the reason and the old routes stay; invalid certificate files are skipped.
   */
  reload(): Promise<void>;
  /** Stops accepting, drains in-flight requests (bounded by the drain timeout), ends sessions. Idempotent. */
  close(): Promise<void>;
}

/**
 * The composition root: builds control → state → data plane → listeners, starts them, logs the one
 * `listening` line, and closes them in reverse order.
 */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  // `tfgate serve` has made them already, one level at a time: a recursive mkdir spins for ever under /proc.
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 }).catch(named('--state-dir', config.stateDir));
  await mkdir(config.certsDir, { recursive: true, mode: 0o700 }).catch(named('--certs-dir', config.certsDir));

  const routing = new RoutingStateBuilder();
  if (config.routesFile) {
    const specs = await readRoutes(config.routesFile).catch((err: unknown) => {
      // Its message names the file and the entry; as a cause, pino would log that message twice.
      throw new StartError(`--routes ${(err as Error).message}`);
    });
    routing.setStatic(specs);
  }
  let own = await loadGatewayCertificates(config, log).catch(named('--certs-dir', config.certsDir));
  const ticketKeys = new TicketKeyRotation();
  const local = config.workers > 1 ? undefined : new LocalPlane(config, log, ticketKeys.current);
  const plane: PlaneHost =
    local ?? new WorkerPool({ count: config.workers, config, log: log.child({ component: 'workers' }), state: () => routing.snapshot(), ticketKeys: ticketKeys.current });
  // /status and the gauges list the state in force (applied by the data planes) as plain data; traffic counters come from the data
  // plane processes. The primary compiles no route table of its own: at 100k routes that copy cost
  // as much memory as a worker.
  let applied = routing.snapshot();
  const catalog = new CertificateCatalog();
  ticketKeys.onRotate((keys) => plane.setTicketKeys(keys));
  // Replaced below once the data plane can take certificates; ACME may call it from then on.
  let refreshCertificates = (): void => {};
  // ACME certificates stored earlier are served from the first snapshot on; new ones arrive through onChange.
  const acme = config.acme
    ? await startCertManager({ ...config.acme, certsDir: config.certsDir, stateDir: config.stateDir, log: log.child({ component: 'acme' }), onChange: () => refreshCertificates() })
    : undefined;
  const acmeSpecs = new Map<string, CertificateSpec>();
  routing.setGatewayCertificates(withAcme(own.specs, acme, acmeSpecs));
  acme?.challenges.subscribe((tokens) => plane.setChallenges(tokens));
  // ACME's abuse guard needs every published name, which costs the whole table: told at most every
  // 250 ms rather than at every publish, so a publish keeps costing only its change.
  let publishedTimer: NodeJS.Timeout | undefined;
  const tellAcmePublished = (): void => {
    if (!acme || publishedTimer) return;
    publishedTimer = setTimeout(() => {
      publishedTimer = undefined;
      acme.setPublished(publishedNames(routing.snapshot()));
    }, 250);
    publishedTimer.unref();
  };
  acme?.setPublished(publishedNames(routing.snapshot()));
  /** Installs a state in every data plane (and, soon after, tells ACME which names are published). */
  const applyState = async (state: RoutingState): Promise<void> => {
    tellAcmePublished();
    await plane.apply(state);
    // Publishes overlap: a slower, older one must not put its state back.
    if (state.version >= applied.version) applied = state;
  };
  refreshCertificates = (): void => {
    routing.setGatewayCertificates(withAcme(own.specs, acme, acmeSpecs));
    applyState(routing.snapshot()).catch((err: unknown) => log.error({ err }, 'certificates could not be installed'));
  };

  const startedAt = Date.now();
  // The primary's own metrics; /metrics adds the data plane processes' traffic registries to them.
  const metrics = new StateMetrics({
    sessions: () => control.sessions().length,
    routes: () => routing.snapshotSize,
    ...(acme ? { acmeFailures: () => acme.failures() } : {}),
    certificates: () =>
      catalog.list(applied.certificates).flatMap((c) => c.names.map((name) => ({ name, source: c.source, notAfter: c.notAfter }))),
  });
  await applyState(routing.snapshot());

  const control = new ControlPlane({
    listen: config.control,
    stateDir: config.stateDir,
    globalDomains: config.globalDomains,
    dnsServer: config.dnsServer,
    sessionGraceMs: config.sessionGraceMs,
    maxFrameBytes: config.limits.controlMaxFrameBytes,
    messagesPerSecond: config.limits.controlMessagesPerSecond,
    maxSessionsPerAccount: config.limits.maxSessionsPerAccount,
    maxClustersPerSession: config.limits.maxClustersPerSession,
    maxPendingDomainsPerAccount: config.limits.maxPendingDomainsPerAccount,
    routing,
    applyRouting: applyState,
    log: log.child({ component: 'control' }),
    onCommand: (command, result) => metrics.controlMessage(command, result),
  });

  let ready = false;
  const admin = new AdminServer(
    {
      ready: () => ready,
      status: async () => buildStatus({ state: applied, certificates: catalog.list(applied.certificates), report: await plane.report(), sessions: () => control.sessions(), startedAt, now: Date.now }),
      metrics: async () => {
        const merged = aggregateMetrics([await metrics.registry.getMetricsAsJSON(), ...(await plane.metrics())]);
        return { contentType: merged.contentType, text: await merged.metrics() };
      },
    },
    log.child({ component: 'admin' }),
    config.adminHosts,
  );

  const started: { close(): Promise<void> }[] = [];
  try {
    await control.start().catch((err: unknown) => {
      if (err instanceof GatewayError && err.code === 'GW_CONTROL_BIND') return named('--control', showListen(config.control))(err);
      return named('--state-dir', config.stateDir)(err);
    });
    started.push(control);
    const adminAddress = await admin.listen(config.admin).catch(named('--admin', showListen(config.admin)));
    started.push(admin);
    const ports = await plane.start(config.http, config.https).catch((err: unknown) => {
      throw listenerFailure(err, config.http, config.https);
    });
    started.push({ close: () => plane.close(0) });
    const httpPort = ports.http;
    const httpsPort = ports.https;
    ready = true;
    log.info({ http: httpPort, https: httpsPort, control: control.port, admin: adminAddress, publicKey: control.publicKey, workers: config.workers }, 'listening');

    let closing: Promise<void> | undefined;
    return {
      http: httpPort,
      https: httpsPort,
      control: control.port,
      admin: adminAddress,
      publicKey: control.publicKey,
      async reload() {
        own = await loadGatewayCertificates(config, log, own.operator);
        routing.setGatewayCertificates(withAcme(own.specs, acme, acmeSpecs));
        let routesRefused = false;
        if (config.routesFile) {
          try {
            routing.setStatic(await readRoutes(config.routesFile));
          } catch (err) {
            routesRefused = true;
            log.error({ err, file: config.routesFile }, 'routes file refused, the previous routes stay');
          }
        }
        await applyState(routing.snapshot());
        const reloaded = { file: config.routesFile, version: applied.version, routes: routing.snapshotSize };
        if (routesRefused) log.warn({ ...reloaded, routesFile: 'refused' }, 'reloaded the certificates; the routes file was refused, the previous routes stay');
        else log.info(reloaded, 'reloaded');
      },
      close() {
        closing ??= (async () => {
          ready = false;
          acme?.close();
          ticketKeys.close();
          clearTimeout(publishedTimer);
          await plane.close(config.drainTimeoutMs);
          await control.close();
          await admin.close();
          log.info('stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    acme?.close();
    ticketKeys.close();
    clearTimeout(publishedTimer);
    await Promise.allSettled([plane.close(0), ...started.map((part) => part.close())]);
    throw err;
  }
}

/** The gateway could not start: the message names the flag and its value, and says why (`--http 8080: address already in use`). */
export class StartError extends GatewayError {
  override readonly code = 'GW_START';
}

/**
 * A rethrower for one start-up step: a system error (an errno code somewhere in the cause chain: a
 * socket that cannot bind, a directory that cannot be written) becomes a {@link StartError} naming
 * `flag`; any other error is the step's own and goes on as it is.
 */
function named(flag: string, value: string): (err: unknown) => never {
  return (err) => {
    const reason = systemReason(err);
    if (reason === undefined) throw err;
    throw new StartError(`${flag} ${value}: ${reason}`, { cause: err });
  };
}

/**
 * The HTTP or HTTPS listener that could not listen, named by matching the error's address against
 * both (from a worker too: see workerListenError). HTTPS binds first, so a host both flags name that
 * does not resolve is reported as --https; an error both match otherwise names both.
 */
function listenerFailure(err: unknown, http: ListenAddress, https: ListenAddress): unknown {
  const system = systemError(err);
  if (system === undefined) return err;
  const matches = (listen: ListenAddress): boolean => {
    if (system.hostname !== undefined) return listen.host === system.hostname;
    if (system.port !== undefined && system.port !== listen.port) return false;
    return system.address === undefined || !isIP(listen.host) || listen.host === system.address;
  };
  const candidates = [
    { flag: '--https', listen: https },
    { flag: '--http', listen: http },
  ].filter(({ listen }) => matches(listen));
  const reason = systemReason(err)!;
  const first = candidates[0];
  if (first && (candidates.length === 1 || system.hostname !== undefined)) return new StartError(`${first.flag} ${showListen(first.listen)}: ${reason}`, { cause: err });
  return new StartError(`--http ${showListen(http)} or --https ${showListen(https)}: ${reason}`, { cause: err });
}

/** A listen address as the flag takes it: `8080`, `127.0.0.1:8080`, `[::1]:8080`. */
function showListen(listen: ListenAddress): string {
  if (listen.host === '') return String(listen.port);
  return `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
}

interface SystemError {
  code: string;
  syscall?: string;
  path?: string;
  address?: string;
  port?: number;
  hostname?: string;
  message: string;
}

/** The first error in the cause chain with an errno code (EADDRINUSE, EACCES, ENOTFOUND) or an SQLite one. */
function systemError(err: unknown): SystemError | undefined {
  for (let at = err, depth = 0; at instanceof Error && depth < 5; at = at.cause, depth++) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && /^(E[A-Z0-9_]+|SQLITE_[A-Z_]+)$/.test(code)) return at as unknown as SystemError;
  }
  return undefined;
}

/** Why a system call failed, in words; undefined when the error is no system error. */
function systemReason(err: unknown): string | undefined {
  const system = systemError(err);
  if (system === undefined) return undefined;
  const socket = system.syscall === 'listen' || system.syscall === 'bind' || system.path === undefined;
  const where = system.path !== undefined ? ` (${system.path})` : '';
  switch (system.code) {
    case 'EADDRINUSE':
      return 'address already in use';
    case 'EADDRNOTAVAIL':
      return 'address not available on this machine';
    case 'ENOTFOUND':
    case 'EAI_NONAME':
      return 'no such host';
    case 'EAI_AGAIN':
      return 'the host could not be looked up (DNS lookup failed for now)';
    case 'ENODEV':
      return 'not an address or interface of this machine';
    case 'EACCES':
    case 'EPERM':
      return socket ? 'permission denied (ports below 1024 need privileges)' : `permission denied${where}`;
    case 'EEXIST':
    case 'ENOTDIR':
      return `not a directory${where}`;
    case 'EROFS':
      return `read-only file system${where}`;
    case 'ENOSPC':
      return `no space left on the device${where}`;
    default:
      return system.message;
  }
}

/** The gateway's own certificates: as plain state, and the operator's as loaded, by file. */
interface GatewayCertificates {
  readonly specs: Map<string, CertificateSpec>;
  readonly operator: ReadonlyMap<string, StoredCertificate>;
}

/**
 * The gateway's own certificates as plain state: the default one (created on first start) and the
 * operator's files at the top of the certs directory; files that cannot be used are logged with the
 * reason. On a reload, a file that became unusable (half-written, say) keeps serving the certificate
 * it held before, as long as that one is still valid; a file that is gone is gone.
 */
async function loadGatewayCertificates(config: Config, log: Logger, previous: ReadonlyMap<string, StoredCertificate> = new Map()): Promise<GatewayCertificates> {
  const now = new Date();
  const specs = new Map<string, CertificateSpec>();
  const operator = new Map<string, StoredCertificate>();
  const fallback = await ensureDefaultCertificate(config.certsDir, config.defaultName, now);
  specs.set('default', toSpec(fallback));
  const { loaded, skipped } = await loadOperatorCertificates(config.certsDir, now);
  for (const certificate of loaded) operator.set(certificate.origin, certificate);
  for (const { file, reason } of skipped) {
    const kept = previous.get(file);
    if (kept !== undefined && kept.bundle.notAfter > now) {
      operator.set(file, kept);
      log.warn({ file, reason, names: kept.servedFor }, 'certificate file unusable, the certificate it held before stays');
    } else log.warn({ file, reason }, 'certificate file skipped');
  }
  // In file name order, as the files are read, so which of two files covering a name wins does not depend on a reload.
  for (const certificate of [...operator.values()].sort((a, b) => (a.origin < b.origin ? -1 : 1))) {
    if (certificate.bundle.namesFromCommonName) log.warn({ file: certificate.origin, names: certificate.bundle.names }, 'certificate has no SAN DNS names: matched on its CN');
    specs.set(`operator:${certificate.origin}`, toSpec(certificate));
  }
  log.info({ operator: operator.size, skipped: skipped.length, defaultName: config.defaultName }, 'certificates loaded');
  return { specs, operator };
}

/**
 * The gateway's own certificates plus the ACME ones in force, keyed `acme:<fqdn>`. Specs are reused
 * by certificate id (`specs`), so data planes do not parse unchanged ACME certificates again.
 */
function withAcme(own: ReadonlyMap<string, CertificateSpec>, acme: CertManager | undefined, specs: Map<string, CertificateSpec>): Map<string, CertificateSpec> {
  const all = new Map(own);
  const inUse = new Set<string>();
  for (const certificate of acme?.certificates() ?? []) {
    let spec = specs.get(certificate.bundle.id);
    if (!spec) specs.set(certificate.bundle.id, (spec = toSpec(certificate)));
    inUse.add(certificate.bundle.id);
    all.set(`acme:${certificate.origin}`, spec);
  }
  for (const id of specs.keys()) if (!inUse.has(id)) specs.delete(id);
  return all;
}

/** Every published fqdn, and whether a session gave it a certificate of its own. */
function publishedNames(state: RoutingState): PublishedName[] {
  return Object.values(state.routes).map((route) => ({ fqdn: route.fqdn, hasSessionCertificate: state.certificates?.[`session:${route.fqdn}`] !== undefined }));
}

function toSpec(certificate: StoredCertificate): CertificateSpec {
  const { bundle, source, origin, servedFor } = certificate;
  return Object.freeze({ source, origin, servedFor, certPem: bundle.certPem, keyPem: bundle.keyPem });
}

/** The static routes of `file`; every error's message starts with the file name. */
async function readRoutes(file: string): Promise<RouteSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    // The reason in the message, and no cause: pino's serializer would append the cause's message again.
    throw new RoutesFileError(`${file}: cannot read it: ${(err as Error).message}`);
  }
  return parseRoutesFile(text, file);
}
