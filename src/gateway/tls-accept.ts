import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello } from '../sni/index.js';
import { BadRequestError } from './errors.js';
import { writeSocketError } from './respond.js';

const kPresented = Symbol('tfgate.presented');
type MarkedTlsSocket = TLSSocket & { [kPresented]?: unknown };
type HelloProgress = Extract<ReturnType<typeof parseClientHello>, { kind: 'incomplete' }>['progress'];

/**
 * ALPN (RFC 7301 §3.2): we speak HTTP/1.x only and pick the first of ours the client offers, so a
 * client offering h2 and http/1.1 gets http/1.1, `curl --http1.0` gets http/1.0, and one offering
 * none of them gets the no_application_protocol alert. Clients that send no ALPN are not affected.
 */
const ALPN_PROTOCOLS = ['http/1.1', 'http/1.0'];

/** What the listener chose for a handshake: the context, and a note kept on the connection for its requests. */
export interface TlsChoice {
  readonly context: SecureContext;
  readonly presented: unknown;
}

/** How {@link acceptTls} chooses a certificate and reports the outcome. */
export interface TlsAcceptOptions {
  /** The context for a raw SNI name (undefined: the client sent none). Runs per handshake: no I/O. */
  select(servername: string | undefined): TlsChoice;
  /** Bound on the ClientHello and the handshake together. */
  readonly timeoutMs: number;
  onSecure(socket: TLSSocket): void;
  onFailure(reason: string, socket: Socket): void;
}

/**
 * Terminates TLS on a raw connection with the certificate chosen from the ClientHello's SNI.
 * The listener reads the ClientHello itself instead of using Node's SNICallback, because Node
 * (nodejs/node#54235) keeps the default context's certificate in the slot of the other key type, so
 * an RSA certificate chosen by SNI loses to an ECDSA default for every ECDSA-capable client.
 * Plain HTTP sent to the HTTPS port gets a 400 that says so.
 */
export function acceptTls(socket: Socket, options: TlsAcceptOptions): void {
  // What has arrived is received[0, length), grown by doubling: a ClientHello that arrives a byte at a
  // time costs O(n) bytes copied, not O(n²). parseClientHello never waits for more than 16,464 bytes
  // (MAX_CLIENT_HELLO_BYTES and 16 record headers), so that and the last chunk is all that is held.
  let received: Buffer = Buffer.alloc(0);
  let length = 0;
  let progress: HelloProgress | undefined;
  const fail = (reason: string): void => {
    cleanup();
    options.onFailure(reason, socket);
    socket.destroy();
  };
  const timer = setTimeout(() => fail('TLS handshake not completed in time'), options.timeoutMs);
  timer.unref();
  const onError = (err: Error): void => fail(`connection error before the handshake: ${err.message}`);
  const onEnd = (): void => fail('connection closed before the ClientHello');
  const cleanup = (): void => {
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onEnd);
  };
  const append = (chunk: Buffer): void => {
    if (length === 0) {
      received = chunk; // the usual case: the whole ClientHello in one chunk, not copied
    } else {
      if (length + chunk.length > received.length) {
        const grown = Buffer.alloc(Math.max(length + chunk.length, Math.min(2 * received.length, MAX_CLIENT_HELLO_BYTES + 1024)));
        received.copy(grown, 0, 0, length);
        received = grown;
      }
      chunk.copy(received, length);
    }
    length += chunk.length;
  };
  const onData = (chunk: Buffer): void => {
    append(chunk);
    // Parsed again only once a whole record header or record can have arrived, and from where it stopped.
    if (length < (progress?.waitFor ?? 1)) return;
    const data = received.subarray(0, length);
    const hello = parseClientHello(data, progress);
    if (hello.kind === 'incomplete') {
      progress = hello.progress;
      return;
    }
    if (hello.kind === 'invalid') {
      if (looksLikeHttp(data)) {
        cleanup();
        clearTimeout(timer);
        options.onFailure('plain HTTP sent to the HTTPS port', socket);
        socket.on('error', () => socket.destroy());
        writeSocketError(socket, new BadRequestError('this port speaks HTTPS; use an https:// URL'));
        return;
      }
      fail(hello.reason);
      return;
    }
    cleanup();
    socket.pause();
    socket.unshift(data);
    let choice: TlsChoice;
    try {
      choice = options.select(hello.servername);
    } catch (err) {
      fail(`no certificate: ${(err as Error).message}`);
      return;
    }
    // TLSSocket reads what was unshifted before it reads the socket's handle.
    const tls: MarkedTlsSocket = new TLSSocket(socket, { isServer: true, secureContext: choice.context, ALPNProtocols: ALPN_PROTOCOLS });
    tls[kPresented] = choice.presented;
    let secure = false;
    tls.once('secure', () => {
      secure = true;
      clearTimeout(timer);
      options.onSecure(tls);
    });
    tls.on('error', (err: Error) => {
      clearTimeout(timer);
      // After the handshake an error (a reset…) is the connection's end, not a failed handshake.
      if (!secure) options.onFailure(err.message, socket);
      tls.destroy();
      socket.destroy();
    });
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onEnd);
}

/** The note {@link TlsAcceptOptions.select} returned for the handshake of this TLS socket. */
export function presentedOn(socket: unknown): unknown {
  return (socket as MarkedTlsSocket)[kPresented];
}

function looksLikeHttp(data: Buffer): boolean {
  const first = data[0] ?? 0;
  return first >= 0x41 && first <= 0x5a; // an upper-case method name: GET, POST, …
}
