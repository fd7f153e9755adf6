import { createLogger } from '../log.js';
import { decodeRouteSpecs } from '../vhost/index.js';
import { LocalPlane } from './local-plane.js';
import { systemErrorFields } from './workers.js';
import type { FromWorker, ToWorker } from './workers.js';

/**
 * A data plane worker process: waits for its config and the routing state from the primary, listens
 * only once the state is applied, then applies every new state and answers status and metrics
 * requests. It ignores SIGINT/SIGTERM (a Ctrl-C reaches the whole process group): the primary
 * decides when it drains. It exits when the primary is gone.
 */
function main(): void {
  let plane: LocalPlane | undefined;
  let listening = false;
  let starting = false;
  let start: Extract<ToWorker, { t: 'start' }> | undefined;
  let closing = false;
  /** The certificates in force, kept so a delta without certificates leaves them as they are. */
  let certificates: Extract<ToWorker, { t: 'state' }>['certificates'];
  const send = (message: FromWorker): void => {
    if (process.connected) process.send!(message);
  };
  const drain = (timeoutMs: number): void => {
    if (closing) return;
    closing = true;
    const done = (): never => process.exit(0);
    if (!plane) done();
    plane!.close(timeoutMs).then(done, done);
  };
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  process.on('disconnect', () => drain(1_000));
  process.on('message', (message: ToWorker) => {
    switch (message.t) {
      case 'start': {
        start = message;
        const log = createLogger(message.config.logLevel).child({ worker: true });
        plane = new LocalPlane(message.config, log, Buffer.from(message.ticketKeys));
        break;
      }
      case 'changes':
        if (!plane || !start) return;
        certificates = message.certificates ?? certificates;
        if (!plane.dataPlane.applyChanges(message.version, message.changes, certificates)) {
          send({ t: 'resync', version: plane.dataPlane.version });
          return;
        }
        if (listening) send({ t: 'applied', version: message.version });
        break;
      case 'state':
        if (!plane || !start) return;
        certificates = message.certificates;
        plane.dataPlane.applyWhole(message.version, decodeRouteSpecs(message.routes), certificates);
        if (listening) {
          send({ t: 'applied', version: message.version });
          return;
        }
        if (starting) return;
        starting = true;
        plane.start(start.http, start.https).then(
          (ports) => {
            listening = true;
            // Whatever arrived while binding is applied too: report the version in force.
            send({ t: 'applied', version: plane!.dataPlane.version });
            send({ t: 'listening', ...ports });
          },
          (err: unknown) => {
            const error = systemErrorFields(err);
            send({ t: 'failed', reason: err instanceof Error ? err.message : String(err), ...(error ? { error } : {}) });
            process.exit(1);
          },
        );
        break;
      case 'challenges':
        plane?.setChallenges(message.challenges);
        if (message.id !== 0) send({ t: 'challenges', id: message.id });
        break;
      case 'ticket-keys':
        plane?.setTicketKeys(Buffer.from(message.keys));
        break;
      case 'report':
        if (plane) send({ t: 'report', id: message.id, report: plane.localReport() });
        break;
      case 'metrics':
        if (plane) {
          plane.trafficMetrics.registry.getMetricsAsJSON().then(
            (metrics) => send({ t: 'metrics', id: message.id, metrics }),
            () => send({ t: 'metrics', id: message.id, metrics: [] }),
          );
        }
        break;
      case 'drain':
        drain(message.timeoutMs);
        break;
    }
  });
  send({ t: 'ready' });
}

main();
