import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeCertificate } from '../helpers/certs.js';
import { CLI, startGatewayProcess } from '../helpers/gateway-process.js';

const execFileAsync = promisify(execFile);

async function upstream(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler ?? ((_req, res) => res.end(name)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => {
    server.closeAllConnections();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function get(port: number, host: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

function routesFile(routes: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tfgate-routes-')), 'routes.json');
  writeFileSync(file, JSON.stringify(routes));
  return file;
}

/** The certificate the HTTPS listener presents for `servername`. */
async function presentedNames(port: number, servername: string): Promise<string | undefined> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const names = socket.getPeerCertificate().subjectaltname;
  socket.destroy();
  return names;
}

describe('tfgate serve', () => {
  it('logs one listening line with the bound ports and answers /healthz and /readyz', async () => {
    const gw = await startGatewayProcess();
    const { http, control, admin, publicKey } = gw.listening;
    expect(http).toBeGreaterThan(0);
    expect(control).toBeGreaterThan(0);
    expect(admin).toMatch(/^127\.0\.0\.1:[1-9][0-9]*$/);
    expect(Buffer.from(publicKey, 'base64')).toHaveLength(32);
    expect(gw.lines.filter((line) => line.msg === 'listening')).toHaveLength(1);
    const adminPort = Number(admin.split(':')[1]);
    expect(await get(adminPort, 'localhost', '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect((await get(adminPort, 'localhost', '/readyz')).status).toBe(200);
    expect(await gw.stop()).toBe(0);
  });

  it('serves the static routes file and reloads it on SIGHUP without dropping an in-flight request', async () => {
    let releaseSlow: () => void = () => {};
    let markStarted: () => void = () => {};
    const slowStarted = new Promise<void>((resolve) => (markStarted = resolve));
    const one = await upstream('one', (req, res) => {
      if (req.url !== '/slow') return res.end('one');
      releaseSlow = () => res.end('slow done');
      markStarted();
    });
    const two = await upstream('two');
    const file = routesFile({ 'a.test': { members: [one] } });
    const gw = await startGatewayProcess(['--routes', file]);
    const port = gw.listening.http;

    expect(await get(port, 'a.test')).toEqual({ status: 200, body: 'one' });
    expect((await get(port, 'b.test')).status).toBe(404);

    const inFlight = get(port, 'a.test', '/slow');
    await slowStarted;
    writeFileSync(file, JSON.stringify({ 'a.test': { members: [one] }, 'b.test': { members: [two] } }));
    gw.child.kill('SIGHUP');
    await gw.waitForLine((line) => line.msg === 'reloaded');
    expect(await get(port, 'b.test')).toEqual({ status: 200, body: 'two' });
    releaseSlow();
    expect(await inFlight).toEqual({ status: 200, body: 'slow done' });
  });

  it('refuses an invalid routes file on SIGHUP with the reason and keeps the old routes', async () => {
    const one = await upstream('one');
    const file = routesFile({ 'a.test': { members: [one] } });
    const gw = await startGatewayProcess(['--routes', file]);
    writeFileSync(file, '{"a.test": {"members": ["nowhere:99999"]}}');
    gw.child.kill('SIGHUP');
    const refused = await gw.waitForLine((line) => line.msg === 'routes file refused, the previous routes stay');
    expect(JSON.stringify(refused.err)).toContain('port out of range');
    expect(await get(gw.listening.http, 'a.test')).toEqual({ status: 200, body: 'one' });
  });

  it('does not start on an invalid routes file, and says why', async () => {
    const file = routesFile({ 'bad name': { members: [] } });
    const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-state-'));
    onTestFinished(() => rmSync(stateDir, { recursive: true, force: true }));
    const failed = await execFileAsync(process.execPath, [CLI, 'serve', '--routes', file, '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--state-dir', stateDir, '--certs-dir', join(stateDir, 'certs')]).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toBe(`tfgate serve: --routes ${file}: "bad name": character U+0020 is not allowed in a hostname\n`);
  });

  it('says in the reloaded line when the routes file was refused, and gives a read error once', async () => {
    const one = await upstream('one');
    const file = routesFile({ 'a.test': { members: [one] } });
    const gw = await startGatewayProcess(['--routes', file]);
    unlinkSync(file);
    gw.child.kill('SIGHUP');
    const refused = await gw.waitForLine((line) => line.msg === 'routes file refused, the previous routes stay');
    const message = (refused.err as { message: string }).message;
    expect(message).toContain(file);
    expect(message.match(/ENOENT/g)).toHaveLength(1);
    const reloaded = await gw.waitForLine((line) => typeof line.msg === 'string' && line.msg.startsWith('reloaded'));
    expect(reloaded.msg).toContain('the routes file was refused');
    expect(reloaded.routesFile).toBe('refused');
    expect(await get(gw.listening.http, 'a.test')).toEqual({ status: 200, body: 'one' });
  });

  let helperStateDir = '';
  it('runs a gateway in a temp state dir of its own (startGatewayProcess)', async () => {
    const gw = await startGatewayProcess();
    helperStateDir = gw.stateDir;
    expect(existsSync(join(helperStateDir, 'tfgate.sqlite'))).toBe(true);
  });

  it('removes that temp state dir once the test that made it has ended', () => {
    expect(helperStateDir).not.toBe('');
    expect(existsSync(helperStateDir)).toBe(false);
  });

  it('refuses a bad flag with exit code 2 naming it, and documents every flag in --help', async () => {
    const failed = await execFileAsync(process.execPath, [CLI, 'serve', '--http', 'eighty']).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(2);
    expect(failed?.stderr).toContain('--http: expected PORT or HOST:PORT');
    const { stdout } = await execFileAsync(process.execPath, [CLI, 'serve', '--help']);
    expect(stdout).toContain('--routes');
    expect(stdout).toContain('TFGATE_STATE_DIR');
  });

  it('serves the operator certificates of the certs dir by SNI, skips invalid ones, and reloads them on SIGHUP', async () => {
    const certsDir = mkdtempSync(join(tmpdir(), 'tfgate-certs-'));
    const docs = makeCertificate({ names: ['docs.example.com'] });
    writeFileSync(join(certsDir, 'docs.pem'), docs.certPem + docs.keyPem);
    writeFileSync(join(certsDir, 'broken.pem'), 'not a certificate');
    const gw = await startGatewayProcess(['--certs-dir', certsDir, '--default-name', 'gateway.test']);
    const { https } = gw.listening;
    expect(https).toBeGreaterThan(0);
    const skipped = await gw.waitForLine((line) => line.msg === 'certificate file skipped');
    expect(skipped).toMatchObject({ file: 'broken.pem', reason: expect.stringContaining('unparsable PEM') });
    expect(await presentedNames(https, 'docs.example.com')).toBe('DNS:docs.example.com');
    expect(await presentedNames(https, 'blog.example.com')).toBe('DNS:gateway.test');
    expect(statSync(join(certsDir, 'default', 'key.pem')).mode & 0o777).toBe(0o600);

    const blog = makeCertificate({ names: ['*.example.com'] });
    writeFileSync(join(certsDir, 'wild.crt'), blog.certPem);
    writeFileSync(join(certsDir, 'wild.key'), blog.keyPem);
    gw.child.kill('SIGHUP');
    await gw.waitForLine((line) => line.msg === 'reloaded');
    expect(await presentedNames(https, 'blog.example.com')).toBe('DNS:*.example.com');
    expect(await presentedNames(https, 'docs.example.com')).toBe('DNS:docs.example.com');
  });

  it('follows links to certificate files, keeps what a half-written file held before on SIGHUP, and keeps its own key private', async () => {
    const certsDir = mkdtempSync(join(tmpdir(), 'tfgate-certs-'));
    const live = mkdtempSync(join(tmpdir(), 'tfgate-live-'));
    const docs = makeCertificate({ names: ['docs.example.com'] });
    writeFileSync(join(live, 'fullchain.pem'), docs.certPem);
    writeFileSync(join(live, 'privkey.pem'), docs.keyPem);
    symlinkSync(join(live, 'fullchain.pem'), join(certsDir, 'docs.crt'));
    symlinkSync(join(live, 'privkey.pem'), join(certsDir, 'docs.key'));
    symlinkSync(join(live, 'missing.pem'), join(certsDir, 'gone.pem'));
    const shop = makeCertificate({ names: ['shop.example.com'] });
    writeFileSync(join(certsDir, 'shop.pem'), shop.certPem + shop.keyPem);
    // An older install's default key, world-readable and unusable: it is made anew, and must end up private.
    mkdirSync(join(certsDir, 'default'), { mode: 0o755 });
    writeFileSync(join(certsDir, 'default', 'key.pem'), 'old', { mode: 0o644 });
    const gw = await startGatewayProcess(['--certs-dir', certsDir, '--default-name', 'gateway.test']);
    const { https } = gw.listening;
    expect(await presentedNames(https, 'docs.example.com')).toBe('DNS:docs.example.com');
    expect(await gw.waitForLine((line) => line.msg === 'certificate file skipped' && line.file === 'gone.pem')).toMatchObject({ reason: expect.stringContaining('ENOENT') });
    expect(statSync(join(certsDir, 'default', 'key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(certsDir, 'default')).mode & 0o777).toBe(0o700);

    /** Waits for the n-th `reloaded` line since start. */
    const reloaded = (n: number) => {
      let seen = 0;
      return gw.waitForLine((line) => line.msg === 'reloaded' && ++seen === n);
    };
    writeFileSync(join(certsDir, 'shop.pem'), shop.certPem.slice(0, 200)); // caught half-written
    gw.child.kill('SIGHUP');
    await reloaded(1);
    expect(await gw.waitForLine((line) => line.msg === 'certificate file unusable, the certificate it held before stays')).toMatchObject({ file: 'shop.pem' });
    expect(await presentedNames(https, 'shop.example.com')).toBe('DNS:shop.example.com');
    // A file that is gone takes its certificate with it.
    unlinkSync(join(certsDir, 'shop.pem'));
    gw.child.kill('SIGHUP');
    await reloaded(2);
    expect(await presentedNames(https, 'shop.example.com')).toBe('DNS:gateway.test');
  });

  it('takes its settings from TFGATE_* environment variables', async () => {
    const one = await upstream('env');
    const file = routesFile({ 'env.test': { members: [one] } });
    const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-state-'));
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [CLI, 'serve'], {
      env: { ...process.env, TFGATE_HTTP: '127.0.0.1:0', TFGATE_HTTPS: '127.0.0.1:0', TFGATE_CONTROL: '127.0.0.1:0', TFGATE_ADMIN: '127.0.0.1:0', TFGATE_STATE_DIR: stateDir, TFGATE_CERTS_DIR: join(stateDir, 'certs'), TFGATE_ROUTES: file },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let out = '';
    const listening = await new Promise<Record<string, number>>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const line = out.split('\n').find((l) => l.includes('"msg":"listening"'));
        if (line) resolve(JSON.parse(line) as Record<string, number>);
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}`)));
    });
    expect(await get(listening.http!, 'env.test')).toEqual({ status: 200, body: 'env' });
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  });
});
