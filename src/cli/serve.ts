import { loadConfig, serveHelp } from '../config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../log.js';
import { startServer } from '../main.js';
import type { RunningServer } from '../main.js';

/** `tfgate serve`: runs the gateway until SIGTERM/SIGINT; SIGHUP reloads the static routes. */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${serveHelp()}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tfgate serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // Signals are handled from the start: the listening line is logged before startServer returns, so a
  // supervisor may signal at once. A SIGHUP then reloads once the gateway runs; a stop request stops it.
  let running: RunningServer | undefined;
  let reloadPending = false;
  let stopSignal: NodeJS.Signals | undefined;
  let stopNow: ((signal: NodeJS.Signals) => void) | undefined;
  const reload = (server: RunningServer): void => {
    server.reload().catch((err: unknown) => log.error({ err }, 'reload failed'));
  };
  process.on('SIGHUP', () => {
    if (running) reload(running);
    else reloadPending = true;
  });
  const onStop = (signal: NodeJS.Signals): void => {
    if (stopNow) stopNow(signal);
    else stopSignal ??= signal;
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  try {
    running = await startServer(config, log);
  } catch (err) {
    log.fatal({ err }, 'could not start');
    log.flush();
    process.stderr.write(`tfgate serve: ${(err as Error).message}\n`);
    return 1;
  }
  const server = running;
  if (reloadPending) reload(server);
  await new Promise<void>((resolve) => {
    let stopping = false;
    stopNow = (signal) => {
      if (stopping) {
        // A second Ctrl-C or SIGTERM: the operator does not want to wait for the drain.
        log.warn({ signal }, 'second stop signal: exiting without waiting for the drain');
        log.flush();
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'stopping');
      server.close().then(resolve, (err: unknown) => {
        log.error({ err }, 'error while stopping');
        resolve();
      });
    };
    if (stopSignal) stopNow(stopSignal);
  });
  log.flush();
  // Whatever library still holds a handle must not keep a stopped gateway alive.
  setTimeout(() => process.exit(0), 2_000).unref();
  return 0;
}
