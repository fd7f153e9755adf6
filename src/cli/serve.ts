import { SERVE_FLAGS, loadConfig, serveHelp } from '../config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../log.js';
import { StartError, startServer } from '../main.js';
import type { RunningServer } from '../main.js';
import { makePrivateDir } from './private-dir.js';

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
      process.stderr.write(`tfgate serve: ${err.message}${booleanHint(argv, err.message)}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // Signals are handled from the start. One that asks to stop before startServer has returned ends the
  // process there and then: a start-up step may never end (an address that does not answer), and the
  // parts started so far hold nothing that needs a drain (worker processes leave when the primary is
  // gone). The listening line is logged in the same tick as startServer returns, so a supervisor that
  // signals once it has seen that line gets a drained stop. A SIGHUP reloads once the gateway runs.
  const onStop = (signal: NodeJS.Signals): void => stopNow(signal);
  let running: RunningServer | undefined;
  let reloadPending = false;
  let stoppedStarting = false;
  let stopNow = (signal: NodeJS.Signals): void => {
    if (stoppedStarting) return;
    stoppedStarting = true;
    log.error({ signal }, 'stopped during start-up');
    process.stderr.write(`tfgate serve: stopped by ${signal} during start-up\n`);
    // Not process.exit: at exit libuv waits for its thread pool, where the step that does not end may
    // be blocked (a FIFO as routes file, a DNS lookup). The signal's default action ends the process.
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      process.kill(process.pid, signal);
    };
    log.flush(end);
    setTimeout(end, 500).unref();
  };
  const reload = (server: RunningServer): void => {
    server.reload().catch((err: unknown) => log.error({ err }, 'reload failed'));
  };
  process.on('SIGHUP', () => {
    if (running) reload(running);
    else reloadPending = true;
  });
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  try {
    // Created here rather than by startServer's recursive mkdir, which spins for ever under /proc.
    for (const [flag, dir] of [
      ['--state-dir', config.stateDir],
      ['--certs-dir', config.certsDir],
    ] as const) {
      try {
        makePrivateDir(dir);
      } catch (err) {
        throw new StartError(`${flag} ${dir}: ${(err as Error).message}`, { cause: (err as Error).cause });
      }
    }
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
  });
  log.flush();
  // Whatever library still holds a handle must not keep a stopped gateway alive.
  setTimeout(() => process.exit(0), 2_000).unref();
  return 0;
}

/**
 * `; booleans take --access-log=false` when the flag error is about a true/false word that followed
 * a boolean flag as a separate argument (`--access-log false`); '' otherwise.
 */
function booleanHint(argv: readonly string[], message: string): string {
  for (let i = 1; i < argv.length; i++) {
    const flag = argv[i - 1]!.startsWith('--') ? argv[i - 1]!.slice(2) : '';
    const word = argv[i]!;
    const spec = Object.hasOwn(SERVE_FLAGS, flag) ? SERVE_FLAGS[flag as keyof typeof SERVE_FLAGS] : undefined;
    if (spec?.kind === 'bool' && /^(true|false|yes|no|1|0)$/.test(word) && message.includes(`'${word}'`)) return `; booleans take --${flag}=${word}`;
  }
  return '';
}
