import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { TooManyConnectionsError } from './errors.js';
import { writeSocketError } from './respond.js';

type Listener = 'http' | 'https';

/** How often, at most, refused connections are logged (with the count since the last line). */
const LOG_EVERY_MS = 1_000;

/**
 * Caps open client connections, in total and per client address, across the listeners it guards.
 * A connection past a cap is refused before anything else sees it: plain HTTP gets a 503 with the
 * reason, TLS a close (nothing can be written before the handshake). Refusals are logged at most
 * once a second, with their count, so a flood cannot flood the log too. It is also the one count of
 * open connections: the metrics read it rather than keep their own.
 */
export class ConnectionLimiter {
  readonly #max: number;
  readonly #maxPerClient: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #byClient = new Map<string, number>();
  readonly #openOn: Record<Listener, number> = { http: 0, https: 0 };
  readonly #refusedOn: Record<Listener, number> = { http: 0, https: 0 };
  #refusedSinceLog = 0;
  #lastLog = Number.NEGATIVE_INFINITY;

  constructor(limits: { maxConnections: number; maxConnectionsPerClient: number }, log: Logger, now: () => number = Date.now) {
    this.#max = limits.maxConnections;
    this.#maxPerClient = limits.maxConnectionsPerClient;
    this.#log = log;
    this.#now = now;
  }

  /** Open client connections now. */
  get open(): number {
    return this.#openOn.http + this.#openOn.https;
  }

  /** Client connections open now on one listener (the connection gauge reads it at scrape time). */
  openOn(listener: Listener): number {
    return this.#openOn[listener];
  }

  /** Connections one listener refused since start, over either cap. */
  refusedOn(listener: Listener): number {
    return this.#refusedOn[listener];
  }

  /** Puts the cap in front of every `connection` listener `server` has now (call once they are all attached). */
  guard(server: Server, listener: Listener): void {
    const inner = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.#admit(socket, listener)) return;
      for (const handle of inner) handle.call(server, socket);
    });
  }

  #admit(socket: Socket, listener: Listener): boolean {
    const client = socket.remoteAddress ?? 'unknown';
    const fromClient = this.#byClient.get(client) ?? 0;
    const reason =
      this.open >= this.#max
        ? `${this.#max} client connections are open, the limit`
        : fromClient >= this.#maxPerClient
          ? `${this.#maxPerClient} connections from ${client} are open, the per-client limit`
          : undefined;
    if (reason !== undefined) {
      this.#refuse(socket, listener, client, reason);
      return false;
    }
    this.#openOn[listener]++;
    this.#byClient.set(client, fromClient + 1);
    socket.once('close', () => {
      this.#openOn[listener]--;
      const left = (this.#byClient.get(client) ?? 1) - 1;
      if (left === 0) this.#byClient.delete(client);
      else this.#byClient.set(client, left);
    });
    return true;
  }

  #refuse(socket: Socket, listener: Listener, client: string, reason: string): void {
    this.#refusedOn[listener]++;
    this.#refusedSinceLog++;
    socket.on('error', () => socket.destroy());
    socket.resume(); // discard what the client sends, so its FIN is seen and the socket closes promptly
    if (listener === 'http') writeSocketError(socket, new TooManyConnectionsError(`connection refused: ${reason}`));
    else socket.destroy();
    const now = this.#now();
    if (now - this.#lastLog >= LOG_EVERY_MS) {
      this.#log.warn({ listener, client, reason, refused: this.#refusedSinceLog }, 'client connections refused');
      this.#lastLog = now;
      this.#refusedSinceLog = 0;
    }
  }
}
