import { mkdir, readFile } from 'node:fs/promises';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ControlPlane, RoutingStateBuilder } from './control/index.js';
import { AdminServer, DataPlane, Gateway, GatewayMetrics, buildStatus, countEjected } from './gateway/index.js';
import { parseRoutesFile } from './vhost/index.js';
import type { RouteSpec } from './vhost/index.js';

/** A running gateway: the bound addresses, and the operator's levers. */
export interface RunningServer {
  readonly http: number;
  readonly control: number;
  readonly admin: string;
  readonly publicKey: string;
  /** Re-reads the static routes file (SIGHUP); an invalid file is refused with the reason and the old routes stay. */
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

  const startedAt = Date.now();
  // One registry per process; with worker processes the primary will merge theirs (a later issue).
  const metrics = new GatewayMetrics({
    sessions: () => control.sessions().length,
    routes: () => dataPlane.routes.current.size,
    membersEjected: () => countEjected(dataPlane, Date.now()),
    certificates: () =>
      (dataPlane.certificates?.all() ?? []).flatMap((c) => c.bundle.names.map((name) => ({ name, source: c.source, notAfter: c.bundle.notAfter }))),
  });
  let gateway: Gateway | undefined;
  const dataPlane = new DataPlane({
    balancer: config.balancer,
    onMembersDropped: (dropped) => gateway?.closeMembers(dropped),
  });
  dataPlane.apply(routing.snapshot());
  gateway = new Gateway({ limits: config.limits, routes: dataPlane.routes, log: log.child({ component: 'gateway' }), accessLog: config.accessLog, metrics });

  const control = new ControlPlane({
    listen: config.control,
    stateDir: config.stateDir,
    globalDomains: config.globalDomains,
    sessionGraceMs: config.sessionGraceMs,
    maxFrameBytes: config.limits.controlMaxFrameBytes,
    messagesPerSecond: config.limits.controlMessagesPerSecond,
    routing,
    applyRouting: async (state) => dataPlane.apply(state),
    log: log.child({ component: 'control' }),
    onCommand: (command, result) => metrics.controlMessage(command, result),
  });

  let ready = false;
  const admin = new AdminServer(
    {
      ready: () => ready,
      status: () =>
        buildStatus({
          dataPlane,
          sessions: () => control.sessions(),
          inFlight: () => gateway?.inFlight ?? 0,
          routeTotals: () => metrics.routeTotals(),
          startedAt,
          now: Date.now,
        }),
      metrics: async () => ({ contentType: metrics.contentType, text: await metrics.text() }),
    },
    log.child({ component: 'admin' }),
  );

  const started: { close(): Promise<void> }[] = [];
  try {
    await control.start();
    started.push(control);
    const adminAddress = await admin.listen(config.admin);
    started.push(admin);
    const httpPort = await gateway.listenHttp(config.http);
    ready = true;
    log.info({ http: httpPort, control: control.port, admin: adminAddress, publicKey: control.publicKey }, 'listening');

    let closing: Promise<void> | undefined;
    return {
      http: httpPort,
      control: control.port,
      admin: adminAddress,
      publicKey: control.publicKey,
      async reload() {
        if (!config.routesFile) return;
        let specs: RouteSpec[];
        try {
          specs = await readRoutes(config.routesFile);
        } catch (err) {
          log.error({ err, file: config.routesFile }, 'routes file refused, the previous routes stay');
          return;
        }
        routing.setStatic(specs);
        dataPlane.apply(routing.snapshot());
        log.info({ file: config.routesFile, routes: specs.length, version: dataPlane.version }, 'static routes reloaded');
      },
      close() {
        closing ??= (async () => {
          ready = false;
          await gateway.close(config.drainTimeoutMs);
          await control.close();
          await admin.close();
          log.info('stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await Promise.allSettled([gateway.close(0), ...started.map((part) => part.close())]);
    throw err;
  }
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
