import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { onTestFinished } from 'vitest';
import { makeCa } from './certs.js';

/** A running Pebble (ACME test CA) and its DNS (pebble-challtestsrv). */
export interface TestPebble {
  /** `https://127.0.0.1:PORT/dir`. */
  readonly directoryUrl: string;
  /** PEM file of the CA that signed Pebble's API certificate (for `--acme-ca`). */
  readonly caFile: string;
  readonly caPem: string;
  readonly process: ChildProcess;
  /** Pebble's root CA of this run (it makes a new one at every start), PEM. */
  root(): Promise<string>;
  /** Stops (SIGSTOP) or resumes (SIGCONT) Pebble, to play a slow CA. */
  pause(paused: boolean): void;
  stop(): Promise<void>;
}

/** A TCP port free on 127.0.0.1 right now (bound, read, released); callers retry if it was taken meanwhile. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts pebble-challtestsrv (DNS only, every name → 127.0.0.1, no AAAA) and Pebble with an API
 * certificate made here, HTTP-01 validations sent to `httpPort`; retries on port collisions and
 * kills both when the test ends.
 */
export async function startPebble(dir: string, httpPort: number): Promise<TestPebble> {
  const ca = makeCa('tfgate test ACME API CA');
  const leaf = apiCertificate(ca);
  const caFile = join(dir, 'pebble-api-ca.pem');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, 'pebble-api.pem'), leaf.certPem);
  writeFileSync(join(dir, 'pebble-api.key'), leaf.keyPem);
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    const [dnsPort, dnsManagement, apiPort, managementPort, tlsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const dns = spawnLogged('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${dnsManagement}`, '-defaultIPv6', ''], {});
    try {
      await dns.waitFor(/Starting challenge servers|Answering|listening|Starting management/i, 10_000);
    } catch (err) {
      dns.kill();
      lastError = err as Error;
      continue;
    }
    const configFile = join(dir, `pebble-config-${attempt}.json`);
    writeFileSync(
      configFile,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${apiPort}`,
          managementListenAddress: `127.0.0.1:${managementPort}`,
          certificate: join(dir, 'pebble-api.pem'),
          privateKey: join(dir, 'pebble-api.key'),
          httpPort,
          tlsPort,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    const pebble = spawnLogged('pebble', ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
    });
    try {
      await pebble.waitFor(/ACME directory available/, 15_000);
    } catch (err) {
      pebble.kill();
      dns.kill();
      lastError = err as Error;
      continue;
    }
    const directoryUrl = `https://127.0.0.1:${apiPort}/dir`;
    return {
      directoryUrl,
      caFile,
      caPem: ca.certPem,
      process: pebble.child,
      root: () => getText(`https://127.0.0.1:${managementPort}/roots/0`, ca.certPem),
      pause: (paused) => pebble.child.kill(paused ? 'SIGSTOP' : 'SIGCONT'),
      async stop() {
        pebble.child.kill('SIGCONT');
        pebble.kill();
        if (pebble.child.exitCode === null && pebble.child.signalCode === null) await once(pebble.child, 'exit');
      },
    };
  }
  throw new Error(`Pebble did not start: ${lastError?.message}`);
}

interface LoggedChild {
  readonly child: ChildProcess;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<void>;
  kill(): void;
}

function spawnLogged(command: string, args: string[], env: Record<string, string>): LoggedChild {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('error', (err) => {
    output += `\nspawn error: ${err.message}`;
    for (const listener of listeners) listener();
  });
  child.on('exit', () => {
    for (const listener of listeners) listener();
  });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  onTestFinished(kill);
  return {
    child,
    kill,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(output)) done();
          else if (child.exitCode !== null || child.signalCode !== null || /spawn error/.test(output)) done(new Error(`${command} exited: ${output.slice(-2000)}`));
        };
        const timer = setTimeout(() => done(new Error(`${command}: no ${pattern} within ${timeoutMs} ms: ${output.slice(-2000)}`)), timeoutMs);
        const done = (err?: Error): void => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve();
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Pebble's API certificate: for 127.0.0.1 and localhost, signed by `ca`. */
function apiCertificate(ca: ReturnType<typeof makeCa>): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  cert.setSubject([{ name: 'commonName', value: 'localhost' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey };
}

function getText(url: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: caPem, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}
