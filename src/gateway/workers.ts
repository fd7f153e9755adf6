import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ListenAddress } from '../config.js';
import type { Logger } from '../log.js';
import { encodeRouteSpecs } from '../vhost/index.js';
import type { RoutingChanges, RoutingState } from '../vhost/index.js';
import type { PlaneConfig } from './local-plane.js';
import { mergeReports } from './plane-report.js';
import type { PlaneReport } from './plane-report.js';
import type { PlaneHost } from './plane-host.js';

/** Primary → worker messages. */
export type ToWorker =
  | { t: 'start'; config: PlaneConfig; http: ListenAddress; https: ListenAddress; ticketKeys: Buffer }
  /** The whole state; `routes` as encodeRouteSpecs wrote them. */
  | { t: 'state'; version: number; routes: Uint8Array; certificates?: RoutingState['certificates'] }
  | { t: 'changes'; version: number; changes: RoutingChanges; certificates?: RoutingState['certificates'] }
  | { t: 'challenges'; challenges: Record<string, string>; id: number }
  | { t: 'ticket-keys'; keys: Buffer }
  | { t: 'report'; id: number }
  | { t: 'metrics'; id: number }
  | { t: 'drain'; timeoutMs: number };

/** Worker → primary messages. */
export type FromWorker =
  | { t: 'ready' }
  | { t: 'listening'; http: number; https: number }
  | { t: 'applied'; version: number }
  | { t: 'resync'; version: number }
  | { t: 'report'; id: number; report: PlaneReport }
  | { t: 'challenges'; id: number }
  | { t: 'metrics'; id: number; metrics: unknown[] }
  | { t: 'failed'; reason: string; error?: SystemErrorFields };

/** What the pool needs from the primary. */
export interface WorkerPoolOptions {
  readonly count: number;
  readonly config: PlaneConfig;
  readonly log: Logger;
  /** The routing state in force, for a worker that (re)starts. */
  readonly state: () => RoutingState;
  readonly ticketKeys: Buffer;
}

/** A worker that has not acknowledged a state within this long is stuck: it is replaced. */
const APPLY_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 3_000;

interface Member {
  readonly worker: Worker;
  applied: number;
  listening: boolean;
  /** The last version and certificates sent, so the next state can go as a delta. */
  sent: number;
  sentCertificates: RoutingState['certificates'];
}

/**
 * The data plane as N worker processes (node:cluster with SCHED_NONE, so the kernel spreads accepts):
 * each gets the routing state before it listens, `apply` resolves once every live worker runs the new
 * version, and a worker that dies is replaced and fed the current state before it takes connections.
 */
export class WorkerPool implements PlaneHost {
  readonly #o: WorkerPoolOptions;
  readonly #members = new Map<number, Member>();
  readonly #waiters = new Set<{ version: number; check: () => void }>();
  readonly #requests = new Map<number, (value: unknown) => void>();
  #nextRequest = 1;
  #closing = false;
  #ports: { http: number; https: number } | undefined;
  #recentDeaths: number[] = [];
  #listen: { http: ListenAddress; https: ListenAddress } = { http: { host: '', port: 0 }, https: { host: '', port: 0 } };
  #ticketKeys: Buffer;
  #challenges: Record<string, string> = {};
  /** The last whole table encoded, for workers asking for the same state soon after (they start together). */
  #encoded: { state: RoutingState; routes: Buffer } | undefined;

  constructor(options: WorkerPoolOptions) {
    this.#o = options;
    this.#ticketKeys = options.ticketKeys;
  }

  /** Forks the workers; resolves with the bound ports once every one of them listens. */
  async start(http: ListenAddress, https: ListenAddress): Promise<{ http: number; https: number }> {
    this.#listen = { http, https };
    // Must precede the first fork: the kernel, not the primary, hands connections to workers.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: workerEntry(), serialization: 'advanced', silent: false });
    const ready = Array.from({ length: this.#o.count }, () => this.#fork());
    const ports = await Promise.all(ready);
    this.#ports = ports[0];
    for (const other of ports) {
      if (other.http !== this.#ports!.http || other.https !== this.#ports!.https) throw new Error('workers bound different ports');
    }
    return this.#ports!;
  }

  /**
   * Sends a state to every worker — as the changes since the version it was last sent when there are
   * such, else whole — and resolves when each live worker has applied it (or was replaced).
   */
  async apply(state: RoutingState): Promise<void> {
    for (const member of this.#members.values()) this.#sendState(member, state);
    await new Promise<void>((resolve) => {
      const waiter = {
        version: state.version,
        check: () => {
          for (const member of this.#members.values()) if (member.listening && member.applied < state.version) return;
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        for (const member of this.#members.values()) {
          if (member.listening && member.applied < state.version) {
            this.#o.log.error({ worker: member.worker.id, version: state.version }, 'worker did not apply the routing state in time; replacing it');
            member.worker.kill('SIGKILL');
          }
        }
      }, APPLY_TIMEOUT_MS);
      this.#waiters.add(waiter);
      waiter.check();
    });
  }

  /** The ACME HTTP-01 answers every worker gives; resolves once each live worker has them. */
  async setChallenges(challenges: Record<string, string>): Promise<void> {
    this.#challenges = challenges;
    // A worker still binding has been fed already: it gets them too, without being waited for.
    for (const member of this.#members.values()) {
      if (!member.listening && member.sent >= 0) this.#send(member.worker, { t: 'challenges', challenges, id: 0 });
    }
    await this.#ask<unknown>((id) => ({ t: 'challenges', challenges, id }));
  }

  /** New TLS session ticket keys for every worker (and for workers started later). */
  setTicketKeys(keys: Buffer): void {
    this.#ticketKeys = keys;
    this.#broadcast({ t: 'ticket-keys', keys });
  }

  /** Every worker's traffic counters, merged. A worker that does not answer in time is left out. */
  async report(): Promise<PlaneReport> {
    const reports = await this.#ask<PlaneReport>((id) => ({ t: 'report', id }));
    return mergeReports(reports);
  }

  /** Every worker's metrics registry as prom-client JSON, to be aggregated by the primary. */
  async metrics(): Promise<unknown[][]> {
    return this.#ask<unknown[]>((id) => ({ t: 'metrics', id }));
  }

  /** Asks every worker to drain (bounded by `timeoutMs`) and waits for them to exit. Idempotent. */
  async close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    const exits = [...this.#members.values()].map(({ worker }) => {
      if (worker.isDead()) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => worker.kill('SIGKILL'), timeoutMs + 5_000);
        timer.unref();
        worker.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        this.#send(worker, { t: 'drain', timeoutMs });
      });
    });
    await Promise.all(exits);
  }

  #fork(): Promise<{ http: number; https: number }> {
    const worker = cluster.fork({ TFGATE_WORKER: '1' });
    const member: Member = { worker, applied: -1, listening: false, sent: -1, sentCertificates: undefined };
    this.#members.set(worker.id, member);
    return new Promise((resolve, reject) => {
      /** Why the worker could not listen, as it said before exiting. */
      let failure: Error | undefined;
      worker.on('message', (message: FromWorker) => {
        switch (message.t) {
          case 'ready':
            // Messages sent before the worker listens for them would be lost: feed it now, or, when
            // the gateway is stopping meanwhile, tell it to stop (a drain sent earlier was lost).
            if (this.#closing) {
              this.#send(worker, { t: 'drain', timeoutMs: 0 });
              break;
            }
            this.#send(worker, {
              t: 'start',
              config: this.#o.config,
              // The address asked for, port 0 included: node:cluster hands a replacement the listening
              // socket the other workers share (asking for the bound port instead would bind anew).
              http: this.#listen.http,
              https: this.#listen.https,
              ticketKeys: this.#ticketKeys,
            });
            this.#send(worker, { t: 'challenges', challenges: this.#challenges, id: 0 });
            this.#sendState(member, this.#o.state(), true);
            break;
          case 'resync':
            this.#o.log.warn({ worker: worker.id, version: message.version }, 'worker asked for the whole routing state');
            this.#sendState(member, this.#o.state(), true);
            break;
          case 'listening':
            member.listening = true;
            for (const waiter of this.#waiters) waiter.check();
            if (this.#ports && (message.http !== this.#ports.http || message.https !== this.#ports.https)) {
              // Every worker had died, so the shared port-0 socket closed and a new port was drawn.
              this.#o.log.error({ worker: worker.id, http: message.http, https: message.https, was: this.#ports }, 'worker listens on other ports than announced');
            } else if (this.#ports) {
              this.#o.log.info({ worker: worker.id, workerPid: worker.process.pid, http: message.http, https: message.https }, 'worker replaced');
            }
            resolve({ http: message.http, https: message.https });
            break;
          case 'applied':
            member.applied = Math.max(member.applied, message.version);
            for (const waiter of this.#waiters) waiter.check();
            break;
          case 'report':
          case 'metrics':
          case 'challenges': {
            const answer = this.#requests.get(message.id);
            answer?.(message.t === 'report' ? message.report : message.t === 'metrics' ? message.metrics : true);
            break;
          }
          case 'failed':
            failure = workerListenError(message.reason, message.error);
            this.#o.log.error({ worker: worker.id, reason: message.reason }, 'worker failed to start');
            break;
        }
      });
      worker.on('error', (err) => this.#o.log.error({ err, worker: worker.id }, 'worker IPC error'));
      worker.once('exit', (code, signal) => {
        this.#members.delete(worker.id);
        for (const waiter of this.#waiters) waiter.check();
        if (!member.listening && !this.#closing) {
          // 'exit' can come before the worker's last messages are read: its reason arrives by the time the IPC channel closes.
          const fail = (): void => reject(failure ?? new Error(`a worker exited before listening (code ${code}, signal ${signal})`));
          if (failure !== undefined || !worker.isConnected()) fail();
          else {
            const timer = setTimeout(fail, 1_000);
            worker.process.once('disconnect', () => {
              clearTimeout(timer);
              fail();
            });
          }
        }
        if (this.#closing || !this.#ports) return;
        this.#o.log.error({ worker: worker.id, code, signal }, 'worker died; starting another');
        this.#replace();
      });
    });
  }

  /** One state to one worker: the delta from what it has, or the whole (plain) state. */
  #sendState(member: Member, state: RoutingState, whole = false): void {
    if (member.sent < 0 && !whole) return; // not fed yet: it gets the state in force when it says it is ready
    const changes = state.changes;
    if (!whole && changes && changes.base === member.sent) {
      const certificates = state.certificates === member.sentCertificates ? undefined : state.certificates;
      this.#send(member.worker, { t: 'changes', version: state.version, changes, ...(certificates ? { certificates } : {}) });
    } else {
      const routes = this.#encode(state);
      this.#send(member.worker, { t: 'state', version: state.version, routes, ...(state.certificates ? { certificates: state.certificates } : {}) });
    }
    member.sent = state.version;
    member.sentCertificates = state.certificates;
  }

  /** The state's routes encoded for a worker; kept a few seconds for the other workers starting at the same time. */
  #encode(state: RoutingState): Buffer {
    if (this.#encoded?.state === state) return this.#encoded.routes;
    const encoded = { state, routes: encodeRouteSpecs(Object.values(state.routes)) };
    this.#encoded = encoded;
    setTimeout(() => {
      if (this.#encoded === encoded) this.#encoded = undefined;
    }, 5_000).unref();
    return encoded.routes;
  }

  /** Forks a replacement; backs off when workers die in a loop so a crash cannot become a fork bomb. */
  #replace(): void {
    const now = Date.now();
    this.#recentDeaths = [...this.#recentDeaths.filter((t) => now - t < 60_000), now];
    const delay = this.#recentDeaths.length > 5 ? Math.min(30_000, 1_000 * 2 ** (this.#recentDeaths.length - 5)) : 0;
    setTimeout(() => {
      if (this.#closing) return;
      this.#fork().catch((err: unknown) => this.#o.log.error({ err }, 'replacement worker failed to start'));
    }, delay).unref();
  }

  async #ask<T>(message: (id: number) => ToWorker): Promise<T[]> {
    const live = [...this.#members.values()].filter((member) => member.listening);
    const answers = live.map(
      ({ worker }) =>
        new Promise<T | undefined>((resolve) => {
          const id = this.#nextRequest++;
          const answer = (value: unknown): void => {
            clearTimeout(timer);
            worker.off('exit', onExit);
            this.#requests.delete(id);
            resolve(value as T | undefined);
          };
          const onExit = (): void => answer(undefined);
          const timer = setTimeout(onExit, REQUEST_TIMEOUT_MS);
          this.#requests.set(id, answer);
          worker.once('exit', onExit);
          this.#send(worker, message(id));
        }),
    );
    return (await Promise.all(answers)).filter((answer): answer is Awaited<T> => answer !== undefined) as T[];
  }

  #broadcast(message: ToWorker): void {
    for (const { worker } of this.#members.values()) this.#send(worker, message);
  }

  #send(worker: Worker, message: ToWorker): void {
    if (!worker.isConnected()) return;
    worker.send(message, (err: Error | null) => {
      if (err) this.#o.log.warn({ err, worker: worker.id, message: message.t }, 'message to worker lost');
    });
  }
}

/** What identifies a system error (a socket that could not bind, a name that did not resolve), as it crosses IPC. */
export interface SystemErrorFields {
  readonly code?: string;
  readonly syscall?: string;
  readonly address?: string;
  readonly port?: number;
  readonly hostname?: string;
}

/** The fields of `err` that {@link workerListenError} rebuilds in the primary (IPC sends an Error as `{}`). */
export function systemErrorFields(err: unknown): SystemErrorFields | undefined {
  if (!(err instanceof Error)) return undefined;
  const { code, syscall, address, port, hostname } = err as Error & Record<string, unknown>;
  if (typeof code !== 'string') return undefined;
  return {
    code,
    ...(typeof syscall === 'string' ? { syscall } : {}),
    ...(typeof address === 'string' ? { address } : {}),
    ...(typeof port === 'number' ? { port } : {}),
    ...(typeof hostname === 'string' ? { hostname } : {}),
  };
}

/**
 * A worker's start-up failure as the error Node would have thrown in this process (its message, code,
 * syscall and address), so the primary can tell which listener failed and why.
 */
export function workerListenError(reason: string, fields: SystemErrorFields = {}): Error {
  return Object.assign(new Error(reason), fields);
}

/** The compiled worker entry beside this file (dist/src/gateway/worker-main.js). */
function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const compiled = here.endsWith('.ts') ? here.replace(/[\\/]src[\\/]gateway[\\/]workers\.ts$/, '/dist/src/gateway/worker-main.js') : here.replace(/workers\.js$/, 'worker-main.js');
  if (!existsSync(compiled)) throw new Error(`worker entry ${compiled} not found: run npm run build`);
  return compiled;
}
