import { mkdir, readFile } from 'node:fs/promises';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ControlPlane, RoutingStateBuilder } from './control/index.js';
import { AdminServer, CertificateCatalog, StateMetrics, LocalPlane, TicketKeyRotation, WorkerPool, aggregateMetrics, buildStatus } from './gateway/index.js';
import type { PlaneHost } from './gateway/index.js';
import { ensureDefaultCertificate, loadOperatorCertificates } from './sni/index.js';
import { startCertManager } from './sni/index.js';
import type { CertManager, PublishedName } from './sni/index.js';
import type { StoredCertificate } from './sni/index.js';
import { parseRoutesFile } from './vhost/index.js';
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
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(config.certsDir, { recursive: true, mode: 0o700 });

  const routing = new RoutingStateBuilder();
  if (config.routesFile) routing.setStatic(await readRoutes(config.routesFile));
  let own = await loadGatewayCertificates(config, log);
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
  );

  const started: { close(): Promise<void> }[] = [];
  try {
    await control.start();
    started.push(control);
    const adminAddress = await admin.listen(config.admin);
    started.push(admin);
    const ports = await plane.start(config.http, config.https);
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
        if (config.routesFile) {
          try {
            routing.setStatic(await readRoutes(config.routesFile));
          } catch (err) {
            log.error({ err, file: config.routesFile }, 'routes file refused, the previous routes stay');
          }
        }
        await applyState(routing.snapshot());
        log.info({ file: config.routesFile, version: applied.version, routes: routing.snapshotSize }, 'reloaded');
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

async function readRoutes(file: string): Promise<RouteSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read routes file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseRoutesFile(text, file);
}
