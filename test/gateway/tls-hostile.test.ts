import { once } from 'node:events';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { Duplex, Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { RoutingStateBuilder } from '../../src/control/routing-state.js';
import { DataPlane, Gateway } from '../../src/gateway/index.js';
import { MAX_CLIENT_HELLO_BYTES, createSelfSignedCertificate, parseClientHello } from '../../src/sni/index.js';
import { collectingLogger } from '../helpers/logs.js';
import { makeCertificate } from '../helpers/certs.js';
import { startUpstream } from '../helpers/upstream.js';
import { TEST_LIMITS } from './harness.js';

/** What a client that does not get what it wants attempts, bounded: the HTTPS listener's own tests are in https.test.ts. */
const WAIT_MS = 5_000;

/** A gateway with an HTTPS listener: `www.example.com` has an operator certificate and a member. */
async function startTlsGateway() {
  const member = await startUpstream((_req, res) => res.end('hello'));
  const generated = await createSelfSignedCertificate(['gateway.test']);
  const www = makeCertificate({ names: ['www.example.com'] });
  const routing = new RoutingStateBuilder();
  routing.setGatewayCertificates(
    new Map([
      ['default', { source: 'default', origin: 'default', certPem: generated.certPem, keyPem: generated.keyPem, servedFor: [] }],
      ['operator:www.pem', { source: 'operator', origin: 'www.pem', certPem: www.certPem, keyPem: www.keyPem, servedFor: ['www.example.com'] }],
    ]),
  );
  routing.setStatic([{ fqdn: 'www.example.com', cluster: 'c:www', members: [member.address], rewrite: null, source: 'static' as const }]);
  const { log: collected, logs } = collectingLogger();
  const dataPlane = new DataPlane({ balancer: 'least-outstanding' });
  dataPlane.apply(routing.snapshot());
  const gateway = new Gateway({
    limits: TEST_LIMITS,
    routes: dataPlane.routes,
    log: collected,
    accessLog: false,
    certificates: () => dataPlane.certificates,
  });
  const httpsPort = await gateway.listenHttps({ host: '127.0.0.1', port: 0 });
  onTestFinished(() => gateway.close(200));
  const failures = () => logs.filter((line) => line.msg === 'TLS handshake failed').map((line) => String(line.reason));
  return { httpsPort, failures };
}

/** `promise`, or a rejection naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TLS connection to the listener (SNI www.example.com), after its handshake; destroyed when the test finishes. */
async function connectTls(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'www.example.com', rejectUnauthorized: false, ...options });
  onTestFinished(() => void socket.destroy());
  const failed = once(socket, 'error').then(([err]) => Promise.reject(err as Error));
  failed.catch(() => {});
  await within(Promise.race([once(socket, 'secureConnect'), failed]), 'the TLS handshake');
  return socket;
}

/** Sends one request on a TLS connection and reads the response until the server closes it. */
async function requestOn(socket: TLSSocket, request: string): Promise<string> {
  let response = '';
  socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
  socket.write(request);
  await within(once(socket, 'end'), 'the response');
  return response;
}

/** The first flight of a real TLS client (Node's own), captured on a plain TCP server. */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => void server.close());
  const accepted = once(server, 'connection');
  const client = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, rejectUnauthorized: false });
  client.on('error', () => {});
  const [socket] = (await within(accepted, 'the capture connection')) as [Socket];
  const chunks: Buffer[] = [];
  while (parseClientHello(Buffer.concat(chunks)).kind === 'incomplete') chunks.push(((await within(once(socket, 'data'), 'the ClientHello')) as [Buffer])[0]);
  client.destroy();
  socket.destroy();
  return Buffer.concat(chunks);
}

/** The handshake messages of TLS records, re-framed as records of `size` bytes each. */
function reframe(records: Buffer, size: number): Buffer {
  const fragments: Buffer[] = [];
  for (let offset = 0; offset < records.length; offset += 5 + records.readUInt16BE(offset + 3)) {
    fragments.push(records.subarray(offset + 5, offset + 5 + records.readUInt16BE(offset + 3)));
  }
  const message = Buffer.concat(fragments);
  const out: Buffer[] = [];
  for (let i = 0; i < message.length; i += size) {
    const fragment = message.subarray(i, i + size);
    out.push(Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]), fragment);
  }
  return Buffer.concat(out);
}

/** One TLS handshake record holding `fragment`. */
function record(fragment: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]), fragment]);
}

/** A ClientHello message of `size` bytes (no SNI) whose bulk is a padding extension (RFC 7685). */
function paddedClientHello(size: number): Buffer {
  const message = Buffer.alloc(size);
  message[0] = 1; // client_hello
  message.writeUIntBE(size - 4, 1, 3);
  message.writeUInt16BE(0x0303, 4); // client_version; random stays zero
  let o = 4 + 2 + 32;
  message[o++] = 0; // session_id
  message.writeUInt16BE(2, o); // cipher_suites: one
  message.writeUInt16BE(0x1301, o + 2);
  o += 4;
  message[o++] = 1; // compression_methods: null
  message[o++] = 0;
  const extensionsLength = size - o - 2;
  message.writeUInt16BE(extensionsLength, o);
  message.writeUInt16BE(21, o + 2); // padding
  message.writeUInt16BE(extensionsLength - 4, o + 4);
  return message;
}

type Progress = NonNullable<Parameters<typeof parseClientHello>[1]>;

/**
 * Feeds `wire` to parseClientHello one byte more at a time, as tls-accept.ts does: a call only once
 * the data holds `progress.waitFor` bytes, from the progress the last call returned. Counts the calls
 * and the bytes they can read: a call that returns progress reads nothing before `from.offset`
 * (checked on every 16th call by zeroing those bytes), and the call with the verdict reads it all.
 */
function feedByteByByte(wire: Buffer) {
  let progress: Progress | undefined;
  let calls = 0;
  let bytesRead = 0;
  for (let received = 1; received <= wire.length; received++) {
    if (received < (progress?.waitFor ?? 1)) continue;
    const data = wire.subarray(0, received);
    const result = parseClientHello(data, progress);
    calls++;
    if (result.kind !== 'incomplete') return { result, calls, bytesRead: bytesRead + received, received };
    const skipped = progress?.offset ?? 0;
    if (progress && calls % 16 === 0) {
      const blinded = Buffer.from(data).fill(0, 0, skipped);
      expect(parseClientHello(blinded, progress)).toEqual(result);
    }
    bytesRead += received - skipped;
    progress = result.progress;
  }
  return { result: undefined, calls, bytesRead, received: wire.length };
}

/**
 * A client-side socket that sends its first write (the ClientHello) as records of `recordBytes`,
 * `chunkBytes` per write with a turn of the event loop between, and everything after as is.
 */
class ReframingSocket extends Duplex {
  readonly #raw: Socket;
  #first = true;

  constructor(raw: Socket, readonly recordBytes: number, readonly chunkBytes: number) {
    super();
    this.#raw = raw;
    raw.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) raw.pause();
    });
    raw.on('end', () => this.push(null));
    raw.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    this.#raw.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (!this.#first) {
      this.#raw.write(chunk, callback);
      return;
    }
    this.#first = false;
    const wire = reframe(chunk, this.recordBytes);
    const trickle = async (): Promise<void> => {
      for (let i = 0; i < wire.length; i += this.chunkBytes) {
        this.#raw.write(wire.subarray(i, i + this.chunkBytes));
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    trickle().then(() => callback(), callback);
  }

  override _final(callback: () => void): void {
    this.#raw.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#raw.destroy();
    callback(err);
  }
}

describe('HTTPS listener against hostile or unusual clients', () => {
  it('refuses TLS 1.2 renegotiation a client starts, and still serves new connections', async () => {
    const { httpsPort } = await startTlsGateway();
    const client = await connectTls(httpsPort, { maxVersion: 'TLSv1.2' });
    expect(client.getProtocol()).toBe('TLSv1.2');
    const outcome = await within(
      new Promise<string>((resolve) => {
        client.once('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
        client.once('close', () => resolve('closed'));
        const started = client.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? `error ${(err as NodeJS.ErrnoException).code}` : 'renegotiated'));
        if (!started) resolve('not started');
      }),
      'the renegotiation',
    );
    // The server answers the new ClientHello with a no_renegotiation alert (RFC 5246 §7.2.2).
    expect(outcome).toBe('error ERR_SSL_NO_RENEGOTIATION');
    const next = await connectTls(httpsPort, { maxVersion: 'TLSv1.2' });
    expect(await requestOn(next, 'GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nhello$/);
  });

  it('negotiates TLS 1.2 only with forward-secret AEAD suites, refusing a client that offers only AES128-SHA or AES128-GCM-SHA256', async () => {
    const { httpsPort } = await startTlsGateway();
    for (const ciphers of ['AES128-SHA', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA']) {
      const failed = await connectTls(httpsPort, { maxVersion: 'TLSv1.2', ciphers }).then(
        (socket) => (socket.destroy(), 'connected'),
        (err: NodeJS.ErrnoException) => err.code ?? err.message,
      );
      expect(failed, ciphers).not.toBe('connected');
    }
    const modern = await connectTls(httpsPort, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(modern.getCipher().name).toBe('ECDHE-RSA-AES128-GCM-SHA256');
    modern.destroy();
    const tls13 = await connectTls(httpsPort, {});
    expect(tls13.getProtocol()).toBe('TLSv1.3');
    tls13.destroy();
  });

  it('accepts a client offering only http/1.0 by ALPN, and still prefers http/1.1 when it is offered', async () => {
    const { httpsPort } = await startTlsGateway();
    const http10 = await connectTls(httpsPort, { ALPNProtocols: ['http/1.0'] });
    expect(http10.alpnProtocol).toBe('http/1.0');
    expect(await requestOn(http10, 'GET / HTTP/1.0\r\nHost: www.example.com\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nhello$/);
    expect((await connectTls(httpsPort, { ALPNProtocols: ['h2', 'http/1.1'] })).alpnProtocol).toBe('http/1.1');
    expect((await connectTls(httpsPort, { ALPNProtocols: ['http/1.0', 'http/1.1'] })).alpnProtocol).toBe('http/1.1');
    expect((await connectTls(httpsPort)).alpnProtocol).toBe(false);
    // Nothing we speak offered: the no_application_protocol alert (RFC 7301 §3.2).
    await expect(connectTls(httpsPort, { ALPNProtocols: ['h2'] })).rejects.toMatchObject({ code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' });
  });

  it('reads a ClientHello that arrives a byte at a time in 1-byte records with work linear in its size', async () => {
    const hello = await captureClientHello('www.example.com');
    const wire = reframe(hello, 1);
    const records = wire.length / 6;
    expect(wire.length).toBeLessThan(MAX_CLIENT_HELLO_BYTES); // Node's ClientHello is well under 2,700 bytes
    const fed = feedByteByByte(wire);
    expect(fed.result).toEqual({ kind: 'hello', servername: 'www.example.com' });
    expect(fed.received).toBe(wire.length);
    // At most one call per record header and one per record; re-parsing from the start on every byte
    // would read about wire.length² / 2 bytes.
    expect(fed.calls).toBeLessThanOrEqual(2 * records + 1);
    expect(fed.bytesRead).toBeLessThanOrEqual(3 * wire.length);
  });

  it('refuses a ClientHello in records of more than 16,464 bytes once those bytes are in, with linear work', () => {
    // 16,000 bytes in 1-byte records would take 96,000: refused at the bound, 2,744 records in.
    expect(feedByteByByte(record(paddedClientHello(16_000))).result).toEqual({ kind: 'hello', servername: undefined });
    const fed = feedByteByByte(reframe(record(paddedClientHello(16_000)), 1));
    expect(fed.result).toEqual({ kind: 'invalid', reason: 'ClientHello records over the size limit' });
    expect(fed.received).toBe(MAX_CLIENT_HELLO_BYTES + 16 * 5);
    expect(fed.calls).toBeLessThanOrEqual(2 * (fed.received / 6) + 1);
    expect(fed.bytesRead).toBeLessThanOrEqual(3 * fed.received);
    // A record whose header already says it goes past the bound is refused from its header.
    const big = feedByteByByte(record(paddedClientHello(16_464)));
    expect(big.result).toEqual({ kind: 'invalid', reason: 'ClientHello records over the size limit' });
    expect(big.received).toBe(5);
  });

  it('completes a handshake whose ClientHello comes in 1-byte records, a few bytes per write', async () => {
    const { httpsPort } = await startTlsGateway();
    const raw = netConnect({ host: '127.0.0.1', port: httpsPort });
    raw.setNoDelay(true);
    await within(once(raw, 'connect'), 'the TCP connection');
    const client = await connectTls(httpsPort, { socket: new ReframingSocket(raw, 1, 7) });
    expect(client.getPeerCertificate().subject.CN).toBe('www.example.com');
    expect(await requestOn(client, 'GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nhello$/);
  });

  it('closes a connection whose ClientHello records pass the bound as soon as they do', async () => {
    const { httpsPort, failures } = await startTlsGateway();
    const socket = netConnect({ host: '127.0.0.1', port: httpsPort });
    onTestFinished(() => void socket.destroy());
    socket.on('error', () => {});
    await within(once(socket, 'connect'), 'the TCP connection');
    socket.write(reframe(record(paddedClientHello(16_000)), 1).subarray(0, MAX_CLIENT_HELLO_BYTES + 16 * 5));
    // Well before the handshake timeout (TEST_LIMITS.headersTimeoutMs), which would close it too.
    await within(once(socket, 'close'), 'the server to close', TEST_LIMITS.headersTimeoutMs / 2);
    expect(failures()).toEqual(['ClientHello records over the size limit']);
  });
});
