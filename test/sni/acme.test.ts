import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { Agent, request } from 'node:https';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect } from 'node:tls';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startServer } from '../../src/main.js';
import { AcmeIssuer, createAcmeKey } from '../../src/sni/acme.js';
import type { RunningServer } from '../../src/main.js';
import { httpGet } from '../helpers/http.js';
import { freePort, startPebble } from '../helpers/pebble.js';
import { startUpstream } from '../helpers/upstream.js';

type LogLine = Record<string, unknown>;

interface AcmeGateway {
  readonly server: RunningServer;
  readonly logs: LogLine[];
}

/** A whole gateway in this process on `dir`'s state and certs, HTTP on `httpPort`, with its parsed log. */
async function startGateway(dir: string, httpPort: number, args: string[]): Promise<AcmeGateway> {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const config = loadConfig(
    ['--http', `127.0.0.1:${httpPort}`, '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--state-dir', join(dir, 'state'), '--certs-dir', join(dir, 'certs'), '--access-log=false', ...args],
    {},
  );
  const server = await startServer(config, createLogger('info', sink));
  onTestFinished(() => server.close());
  return { server, logs };
}

/** Polls `check` every 50 ms until it returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The leaf certificate served for `servername` (not verified). */
async function servedCertificate(port: number, servername: string): Promise<PeerCertificate> {
  const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
  socket.setTimeout(5_000, () => socket.destroy(new Error('TLS handshake timed out')));
  await once(socket, 'secureConnect');
  const certificate = socket.getPeerCertificate();
  // end(), not destroy(): a connection cut right after its handshake holds the gateway's close for a header timeout.
  socket.end();
  await once(socket, 'close');
  return certificate;
}

/** GET over HTTPS through `agent` (keep-alive), with the Host and SNI `servername`. */
function httpsGet(port: number, servername: string, agent: Agent): Promise<{ status: number; body: string; reused: boolean; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, servername, headers: { host: servername }, path: '/', agent, timeout: 5_000 }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket, fingerprint });
      });
    });
    req.on('timeout', () => req.destroy(new Error('HTTPS request timed out')));
    req.on('error', reject);
    req.end();
  });
}

const orders = (logs: LogLine[]): LogLine[] => logs.filter((line) => line.msg === 'ACME order placed');

describe('ACME with Pebble', () => {
  it('issues for a published name, reuses it after a restart, renews without dropping connections', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-acme-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const member = await startUpstream((_req, res) => res.end('hello'));
    const routesFile = join(dir, 'routes.json');
    const routes = (names: string[]): void =>
      writeFileSync(routesFile, JSON.stringify(Object.fromEntries(names.map((name) => [name, { members: [member.address] }]))));
    routes(['*.wild.test']);

    // The gateway first (Pebble needs its HTTP port), with only a wildcard published.
    const httpPort = await freePort();
    const pebble = await startPebble(dir, httpPort);
    onTestFinished(() => pebble.stop());
    const acmeArgs = ['--routes', routesFile, '--acme-directory', pebble.directoryUrl, '--acme-ca', pebble.caFile, '--acme-email', 'ops@example.com', '--acme-retry', '500ms'];
    const first = await startGateway(dir, httpPort, acmeArgs);
    const root = await pebble.root();

    // Publish app.test: a certificate issued by Pebble is served for it within a bound.
    const publishedAt = Date.now();
    routes(['*.wild.test', 'app.test']);
    await first.server.reload();
    const issued = await waitFor('a Pebble certificate for app.test', async () => {
      const certificate = await servedCertificate(first.server.https, 'app.test');
      return /Pebble/.test(String(certificate.issuer.CN)) ? certificate : undefined;
    });
    const timeToIssueMs = Date.now() - publishedAt;
    console.log(`ACME: time from publish to a served Pebble certificate: ${timeToIssueMs} ms`);
    expect(issued.subjectaltname).toBe('DNS:app.test');
    expect(timeToIssueMs).toBeLessThan(30_000);
    // It verifies against this run's Pebble root, and HTTPS traffic flows.
    const verified = connect({ host: '127.0.0.1', port: first.server.https, servername: 'app.test', ca: root });
    await once(verified, 'secureConnect');
    expect(verified.authorized).toBe(true);
    verified.end();
    await once(verified, 'close');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: root });
    onTestFinished(() => agent.destroy());
    expect((await httpsGet(first.server.https, 'app.test', agent)).body).toBe('hello');

    // Stored 0600 under certs/acme/, indexed in SQLite.
    for (const file of ['certs/acme/account.key', 'certs/acme/app.test/key.pem', 'certs/acme/app.test/cert.pem', 'state/acme.sqlite']) {
      expect(statSync(join(dir, file)).mode & 0o777, file).toBe(0o600);
    }
    expect(readFileSync(join(dir, 'certs/acme/app.test/key.pem'), 'utf8')).toMatch(/BEGIN PRIVATE KEY/);

    // The wildcard is skipped with one log line however often the state changes; a stranger's SNI orders nothing.
    await first.server.reload();
    expect((await servedCertificate(first.server.https, 'stranger.test')).issuer.CN).not.toMatch(/Pebble/);
    expect((await servedCertificate(first.server.https, 'x.wild.test')).issuer.CN).not.toMatch(/Pebble/);
    expect(first.logs.filter((line) => line.msg === 'no ACME certificate for this name' && line.fqdn === '*.wild.test')).toHaveLength(1);
    expect(orders(first.logs).map((line) => line.fqdn)).toEqual(['app.test']);
    await first.server.close();

    // Restart: the same certificate at once, no new order.
    const second = await startGateway(dir, httpPort, acmeArgs);
    expect((await servedCertificate(second.server.https, 'app.test')).fingerprint256).toBe(issued.fingerprint256);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(orders(second.logs)).toHaveLength(0);
    await second.server.close();

    // Forced renewal (every certificate due) while Pebble is stalled: the old certificate keeps serving.
    pebble.pause(true);
    const third = await startGateway(dir, httpPort, [...acmeArgs, '--acme-renew-percent', '100']);
    await waitFor('a renewal order', () => (orders(third.logs).length > 0 ? true : undefined), 5_000);
    const before = await httpsGet(third.server.https, 'app.test', agent);
    expect(before).toMatchObject({ status: 200, body: 'hello', fingerprint: issued.fingerprint256 });
    pebble.pause(false);
    const renewed = await waitFor('the renewed certificate', async () => {
      const certificate = await servedCertificate(third.server.https, 'app.test');
      return certificate.fingerprint256 !== issued.fingerprint256 ? certificate : undefined;
    });
    expect(renewed.issuer.CN).toMatch(/Pebble/);
    // The connection opened on the old certificate still carries requests.
    const after = await httpsGet(third.server.https, 'app.test', agent);
    expect(after).toMatchObject({ status: 200, body: 'hello', reused: true, fingerprint: issued.fingerprint256 });
    expect(orders(third.logs)).toEqual([expect.objectContaining({ fqdn: 'app.test', renewal: true })]);
    expect(third.logs.some((line) => line.msg === 'ACME order failed')).toBe(false);
  });

  it('keeps serving when the ACME directory is unreachable or answers garbage, and counts the failures', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-acme-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const member = await startUpstream((_req, res) => res.end('hello'));
    const routesFile = join(dir, 'routes.json');
    writeFileSync(routesFile, JSON.stringify({ 'app.test': { members: [member.address] }, 'other.test': { members: [member.address] } }));
    const garbage = createServer((_req, res) => res.end('<html>not a directory</html>'));
    garbage.listen(0, '127.0.0.1');
    await once(garbage, 'listening');
    onTestFinished(() => new Promise<void>((resolve) => garbage.close(() => resolve())));

    for (const directory of [`https://127.0.0.1:${await freePort()}/dir`, `http://127.0.0.1:${(garbage.address() as AddressInfo).port}/dir`]) {
      const gateway = await startGateway(join(dir, String(Math.random()).slice(2)), 0, ['--routes', routesFile, '--acme-directory', directory, '--acme-retry', '200ms']);
      const failures = await waitFor('two failed attempts for app.test', () => {
        const failed = gateway.logs.filter((line) => line.msg === 'ACME order failed' && line.fqdn === 'app.test');
        return failed.length >= 2 ? failed : undefined;
      });
      expect((failures[0]!.err as { message: string }).message.length).toBeGreaterThan(0);
      expect(failures[1]!.retryInMs as number).toBeGreaterThan(failures[0]!.retryInMs as number); // exponential back-off
      // Traffic is unaffected: HTTP routes, HTTPS serves the default certificate.
      expect((await httpGet(gateway.server.http, 'app.test')).body).toBe('hello');
      expect((await servedCertificate(gateway.server.https, 'app.test')).issuer.CN).not.toMatch(/Pebble/);
      const metrics = await new Promise<string>((resolve, reject) => {
        fetch(`http://${gateway.server.admin}/metrics`).then((res) => res.text()).then(resolve, reject);
      });
      const counted = Number(/^tfgate_acme_failures_total (\d+)/m.exec(metrics)?.[1]);
      expect(counted).toBeGreaterThanOrEqual(3);
      await gateway.server.close();
    }
  });
});

describe('AcmeIssuer against a failing CA', () => {
  const sink = { set: () => undefined, delete: () => undefined };

  it('reads the directory again after an order failed, so one bad answer does not stop ACME until a restart', { timeout: 30_000 }, async () => {
    let directoryReads = 0;
    const ca = createServer((req, res) => {
      const base = `http://127.0.0.1:${(ca.address() as AddressInfo).port}`;
      if (req.url === '/dir') {
        // The first read gets a maintenance page (200, not JSON); later ones the real directory.
        if (directoryReads++ === 0) return void res.end('<html>down for maintenance</html>');
        res.setHeader('content-type', 'application/json');
        return void res.end(JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/account`, newOrder: `${base}/order`, revokeCert: `${base}/revoke`, keyChange: `${base}/key` }));
      }
      if (req.url === '/nonce') return void res.writeHead(200, { 'replay-nonce': `nonce-${Date.now()}` }).end();
      res.writeHead(403, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:unauthorized', detail: `the test CA refuses ${req.url}` }));
    });
    ca.listen(0, '127.0.0.1');
    await once(ca, 'listening');
    onTestFinished(() => new Promise<void>((resolve) => ca.close(() => resolve())));
    const issuer = new AcmeIssuer({ directoryUrl: `http://127.0.0.1:${(ca.address() as AddressInfo).port}/dir`, email: null, caPem: null, accountKeyPem: await createAcmeKey(), log: createLogger('silent') });
    onTestFinished(() => issuer.close());
    await expect(issuer.issue('app.test', sink)).rejects.toThrow(/ACME directory|API resource/);
    // The next order reads the directory again and gets as far as the CA's own refusal.
    await expect(issuer.issue('app.test', sink)).rejects.toThrow(/the test CA refuses \/account/);
    expect(directoryReads).toBe(2);
  });

  it('says why the CA cannot be reached rather than an error from inside acme-client', { timeout: 30_000 }, async () => {
    const directoryUrl = `http://127.0.0.1:${await freePort()}/dir`;
    const issuer = new AcmeIssuer({ directoryUrl, email: null, caPem: null, accountKeyPem: await createAcmeKey(), log: createLogger('silent') });
    onTestFinished(() => issuer.close());
    const failure = await issuer.issue('app.test', sink).then(() => undefined, (err: Error) => err);
    expect(failure?.message).toBe(`cannot reach the ACME server at ${directoryUrl}: connect ECONNREFUSED ${directoryUrl.slice(7, -4)}`);
  });
});
