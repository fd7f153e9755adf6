import { once } from 'node:events';
import { request } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';

/** A response read in full. */
export interface TestResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: string;
}

/** Options of {@link httpRequest}: any Host can be set; `body` is sent as is. */
export interface TestRequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: OutgoingHttpHeaders | readonly string[];
  readonly body?: string | Buffer;
  /** Gives up (rejects) after this long; default 5 s. */
  readonly timeoutMs?: number;
}

/** One request with node:http on a fresh connection (no agent), the whole body read as text. */
export async function httpRequest(port: number, options: TestRequestOptions = {}): Promise<TestResponse> {
  const headers: OutgoingHttpHeaders | string[] = Array.isArray(options.headers)
    ? [...(options.host !== undefined ? ['Host', options.host] : []), ...options.headers]
    : { ...(options.host !== undefined ? { host: options.host } : {}), ...(options.headers as OutgoingHttpHeaders | undefined) };
  const req = request({
    host: '127.0.0.1',
    port,
    method: options.method ?? 'GET',
    path: options.path ?? '/',
    headers,
    agent: false,
    setHost: false,
  });
  req.setTimeout(options.timeoutMs ?? 5_000, () => req.destroy(new Error('test request timed out')));
  req.end(options.body);
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() };
}

/** Shorthand for a GET with a Host. */
export function httpGet(port: number, host: string, path = '/'): Promise<TestResponse> {
  return httpRequest(port, { host, path });
}

/**
 * Writes raw bytes on a fresh connection and resolves with everything read until the server
 * closes the connection (or `timeoutMs`, then the socket is destroyed and what came so far returned).
 */
export async function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 5_000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.write(bytes);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  await once(socket, 'close');
  clearTimeout(timer);
  return Buffer.concat(chunks).toString('latin1');
}

/** Opens a raw connection (for slow clients and upgrades); the caller closes it. */
export async function rawConnect(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Reads from `socket` until `done(text so far)` is true; rejects after `timeoutMs`. */
export function readUntil(socket: Socket, done: (text: string) => boolean, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (done(text)) finish();
    };
    const onClose = (): void => finish(new Error(`connection closed before the expected data; got ${JSON.stringify(text.slice(0, 300))}`));
    const timer = setTimeout(() => finish(new Error(`timed out; got ${JSON.stringify(text.slice(0, 300))}`)), timeoutMs);
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(text);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}

/** The status code of a raw HTTP response text, or 0. */
export function statusOf(raw: string): number {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return match ? Number(match[1]) : 0;
}
