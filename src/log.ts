import { pino } from 'pino';
import type { DestinationStream, Logger, LevelWithSilent } from 'pino';

export type { Logger };

/** Log levels an operator can choose with `--log-level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * The root logger: pino JSON, one line per record, secrets redacted. Components take child loggers
 * (`log.child({ component: 'control' })`). `destination` lets tests read the real output.
 */
export function createLogger(level: LevelWithSilent = 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: ['secretKey', 'sessionKey', 'token', '*.secretKey', '*.sessionKey', '*.token', 'ssl', '*.ssl'],
        censor: '[redacted]',
      },
      serializers: { err: pino.stdSerializers.err },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
