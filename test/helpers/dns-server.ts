/**
 * A real DNS server for tests: Debian's `pebble-challtestsrv` (package `pebble`, installed by
 * .ci/run), serving over UDP and TCP on a free loopback port, whose TXT records a test sets through
 * its HTTP management API. Started per test and killed when the test ends.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { onTestFinished } from 'vitest';

export const CHALLTESTSRV = 'pebble-challtestsrv';

/** A running DNS server. */
export interface TestDnsServer {
  /** `127.0.0.1:port`, as `--dns-server` takes it. */
  readonly address: string;
  /** Adds a TXT record (a name may hold several). */
  setTxt(name: string, value: string): Promise<void>;
  /** Removes every TXT record of a name. */
  clearTxt(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts pebble-challtestsrv on free ports, retrying when a port was taken meanwhile. */
export async function startDnsServer(): Promise<TestDnsServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const server = await tryStart();
      onTestFinished(() => server.close());
      return server;
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`could not start ${CHALLTESTSRV} (is Debian's pebble package installed?): ${String(lastError)}`);
}

async function tryStart(): Promise<TestDnsServer> {
  const dnsPort = await freePort(true);
  const managementPort = await freePort(false);
  const child = spawn(
    CHALLTESTSRV,
    ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${managementPort}`, '-http01', '', '-https01', '', '-tlsalpn01', ''],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const spawned = once(child, 'spawn');
  const failed = once(child, 'error');
  await Promise.race([spawned, failed.then(([err]) => Promise.reject(err as Error))]);

  const management = `http://127.0.0.1:${managementPort}`;
  const post = async (path: string, body: Record<string, string>): Promise<void> => {
    const response = await fetch(`${management}${path}`, { method: 'POST', body: JSON.stringify(body) });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${CHALLTESTSRV} ${path}: HTTP ${response.status}`);
  };
  const server: TestDnsServer = {
    address: `127.0.0.1:${dnsPort}`,
    setTxt: (name, value) => post('/set-txt', { host: fqdn(name), value }),
    clearTxt: (name) => post('/clear-txt', { host: fqdn(name) }),
    close: () => stop(child),
  };
  try {
    // Proof that both ports are this instance's: a record set through one is served on the other.
    const probe = `probe-${randomBytes(6).toString('hex')}.tfgate.test`;
    const value = randomBytes(8).toString('hex');
    await retryUntil(() => server.setTxt(probe, value), 5000, () => child.exitCode !== null);
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([server.address]);
    await retryUntil(async () => {
      const records = await resolver.resolveTxt(probe);
      if (!records.some((r) => r.join('') === value)) throw new Error('the probe record is not served');
    }, 3000, () => child.exitCode !== null);
    await server.clearTxt(probe);
    return server;
  } catch (err) {
    await stop(child);
    throw new Error(`${String(err)}; output: ${output.slice(-500)}`);
  }
}

function fqdn(name: string): string {
  return name.endsWith('.') ? name : `${name}.`;
}

/** A port free on 127.0.0.1 (for TCP, and for UDP too when `udp`), closed again for the server to take. */
async function freePort(udp: boolean): Promise<number> {
  for (;;) {
    const tcp = createServer();
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    const port = (tcp.address() as AddressInfo).port;
    let udpFree = true;
    if (udp) {
      const socket = createSocket('udp4');
      try {
        socket.bind(port, '127.0.0.1');
        await Promise.race([once(socket, 'listening'), once(socket, 'error').then(([err]) => Promise.reject(err as Error))]);
      } catch {
        udpFree = false;
      }
      socket.close();
    }
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
    if (udpFree) return port;
  }
}

async function retryUntil(attempt: () => Promise<void>, timeoutMs: number, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await attempt();
      return;
    } catch (err) {
      if (gaveUp() || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}
