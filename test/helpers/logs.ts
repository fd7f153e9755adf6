import { Writable } from 'node:stream';
import { createLogger } from '../../src/log.js';
import type { Logger } from '../../src/log.js';

/** A logger whose JSON lines are parsed into `logs` as they are written, for tests to read. */
export function collectingLogger(level: Parameters<typeof createLogger>[0] = 'debug'): { readonly log: Logger; readonly logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { log: createLogger(level, sink), logs };
}
