import { loadConfig, serveHelp } from '../config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../log.js';
import { startServer } from '../main.js';

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
  let server;
  try {
    server = await startServer(config, log);
  } catch (err) {
    log.fatal({ err }, 'could not start');
    log.flush();
    process.stderr.write(`tfgate serve: ${(err as Error).message}\n`);
    return 1;
  }
  const running = server;
  process.on('SIGHUP', () => {
    running.reload().catch((err: unknown) => log.error({ err }, 'reload failed'));
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      running.close().then(resolve, (err: unknown) => {
        log.error({ err }, 'error while stopping');
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  log.flush();
  // Whatever library still holds a handle must not keep a stopped gateway alive.
  setTimeout(() => process.exit(0), 2_000).unref();
  return 0;
}
