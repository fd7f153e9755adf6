import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

/** A request an upstream saw, with its body when the handler let the helper read it. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
}

/** A test upstream listening on 127.0.0.1:0. */
export interface TestUpstream {
  /** `127.0.0.1:PORT`, as a cluster member. */
  readonly address: string;
  readonly port: number;
  /** Every request seen, in arrival order. */
  readonly requests: SeenRequest[];
  /** Sockets currently open to this upstream. */
  readonly connections: Set<Socket>;
  readonly server: Server;
  close(): Promise<void>;
}

/** Starts an HTTP upstream with `handler` (default: answers `hello from PORT`). */
export async function startUpstream(handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestUpstream> {
  const requests: SeenRequest[] = [];
  const connections = new Set<Socket>();
  let port = 0;
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    if (handler) handler(req, res);
    else res.end(`hello from ${port}`);
  });
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    requests,
    connections,
    server,
    close: async () => {
      server.closeAllConnections();
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP "upstream" that hands each connection to `onConnection` (hang, answer garbage…). */
export async function startRawUpstream(onConnection: (socket: Socket) => void): Promise<TestUpstream & { readonly received: Buffer[] }> {
  const connections = new Set<Socket>();
  const received: Buffer[] = [];
  const server = createNetServer((socket) => {
    connections.add(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('close', () => connections.delete(socket));
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    requests: [],
    received,
    connections,
    server: server as unknown as Server,
    close: async () => {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An address nothing listens on (a port bound then released), for "member down" cases. */
export async function deadAddress(): Promise<string> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}
