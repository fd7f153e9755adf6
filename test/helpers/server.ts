import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import nacl from 'tweetnacl';
import { onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { Location, encodeKey, openStore } from '../../src/control/index.js';
import { createLogger } from '../../src/log.js';
import { startServer } from '../../src/main.js';
import type { RunningServer } from '../../src/main.js';

/** A whole gateway (startServer) in this process, with its parsed log lines. */
export interface TestServer {
  readonly server: RunningServer;
  readonly stateDir: string;
  readonly adminPort: number;
  /** Every log record so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Adds an account named `name` through the store and opens an SDK session with it (closed when the test ends). */
  connect(name: string): Promise<Location>;
}

/**
 * Starts `startServer` on 127.0.0.1 port 0 for every listener, a temp state dir and
 * `--global-domain test` plus `args`; closes it when the test ends.
 */
export async function startTestServer(args: string[] = []): Promise<TestServer> {
  const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-admin-'));
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const config = loadConfig(
    ['--workers', '1', '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--state-dir', stateDir, '--certs-dir', join(stateDir, 'certs'), '--global-domain', 'test', ...args],
    {},
  );
  const server = await startServer(config, createLogger('info', sink));
  onTestFinished(async () => {
    await server.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  return {
    server,
    stateDir,
    adminPort: Number(server.admin.split(':').pop()),
    logs,
    async connect(name: string) {
      const pair = nacl.box.keyPair();
      const store = openStore(stateDir);
      try {
        store.addAccount(encodeKey(pair.publicKey), name);
      } finally {
        store.close();
      }
      const location = await Location.connect({ host: '127.0.0.1', port: server.control, serverKey: server.publicKey, keys: pair, heartbeatIntervalMs: 0 });
      onTestFinished(() => location.close());
      return location;
    },
  };
}
